rsync --server -logDtpXre.LsfxCIvu --log-format=%i --checksum-seed=1 . dst/
