rsync --server -logDtpXre.LsfxCIvu --checksum-seed=1 . dst/
