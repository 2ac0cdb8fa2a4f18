rsync --server -logDtpAre.LsfxCIvu --checksum-seed=1 . dst/
