"""Publishing build artifacts to a repository: a directory, a WebDAV server or an S3
bucket (`backends.open_backend`), each behind the small `backend.Backend` interface
(atomic writes, compare-and-swap of the signed indexes), and the publish logic
(`publisher`) that keeps the repository consistent when publishers run at once or die."""
