rsync --server -logDtpre.LsfxCIvu --log-format=%i . dst/
