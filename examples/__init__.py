"""Examples built on the toolkit; nothing that ships imports them."""
