"""The read-only FUSE view of a store: every snapshot as a directory tree.

`rsyncd-py mount` runs it (rsyncd_py/cli/mount_cmd.py); docs/FUSE.md is the user's
guide. Modules, each one concept:
- `mount.py`: `serve(volume, mountpoint, ...)`, the process side (pyfuse3 on trio,
  signals, unmount);
- `fs.py`: `StoreOperations`, the pyfuse3 request handlers;
- `catalog.py`: what the mount shows, read from the volume (views, directories,
  snapshots, hard-link counts, stored sizes);
- `inodes.py`: the inode table (stable derived numbers, lookup counts, forget);
- `reader.py`: one open file (block fetches, read-ahead, integrity check);
- `xattrs.py`: the xattrs shown, ACLs as the kernel's system.posix_acl_* values.
Needs the optional `fuse` dependencies (pyfuse3, trio); nothing else imports this.
"""
