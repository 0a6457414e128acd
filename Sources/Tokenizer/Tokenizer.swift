// Tokenizer module.
