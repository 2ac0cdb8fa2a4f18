rsync --server --sender -logDtpAre.iLsfxCIvu --checksum-seed=1 . src/
