// TokenizerTests
