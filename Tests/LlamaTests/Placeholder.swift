// LlamaTests
