// CKernelsTests
