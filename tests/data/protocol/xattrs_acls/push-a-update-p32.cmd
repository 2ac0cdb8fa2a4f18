rsync --server -logDtpAre.LsfxCIvu --log-format=%i --checksum-seed=1 . dst/
