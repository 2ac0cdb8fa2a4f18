rsync --server --sender -logDtpXre.LsfxCIvu --checksum-seed=1 . src/
