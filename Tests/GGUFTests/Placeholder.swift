// GGUFTests
