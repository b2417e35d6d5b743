"""User workspaces: each user's private files (/files), their quota and their retention."""
