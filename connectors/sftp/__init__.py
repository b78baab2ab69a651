"""SFTP (asyncssh): files delivered complete to a folder on another system (Conduit's)."""
