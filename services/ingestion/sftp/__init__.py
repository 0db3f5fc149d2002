"""SFTP datafeed: merchants upload `<app key>[_FULL|_INCREMENT|_DELETE].csv.gz` plus an empty marker."""
