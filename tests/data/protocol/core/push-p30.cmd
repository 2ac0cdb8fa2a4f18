rsync --server -logDtpre.LsfxCIvu . dst/
