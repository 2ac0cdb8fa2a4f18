rsync --server -logDtpAre.iLsfxCIvu --checksum-seed=1 . dst/
