"""Built-in sample data: synthetic collections generated on first use and real sample packs."""
