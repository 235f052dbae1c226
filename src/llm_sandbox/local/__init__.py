"""The previous generation's configuration of its local (bubblewrap) sessions; see `config`."""
