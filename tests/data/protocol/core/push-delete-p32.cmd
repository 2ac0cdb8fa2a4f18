rsync --server -logDtpre.LsfxCIvu --delete . dst/
