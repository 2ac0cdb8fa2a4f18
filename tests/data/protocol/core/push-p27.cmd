rsync --server -logDtpr . dst/
