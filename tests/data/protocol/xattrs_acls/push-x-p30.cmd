rsync --server -logDtpXre.iLsfxCIvu --checksum-seed=1 . dst/
