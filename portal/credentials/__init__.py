"""Cloud credentials: validated on entry, encrypted at rest, decrypted only for the platform's use."""
