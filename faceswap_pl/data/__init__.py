"""Data: shard schema, streaming reader, pairing, augmentation and DataModules."""
