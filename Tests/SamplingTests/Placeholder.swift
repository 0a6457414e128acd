// SamplingTests
