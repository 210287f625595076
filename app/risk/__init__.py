"""The risk engine: limits at every scope, the scopes' states, and the actions that
protect (``domain/`` pure; ``limits`` the user's and admin's settings, ``gate`` the check
in the placement transaction, ``triggers`` what fills set off)."""
