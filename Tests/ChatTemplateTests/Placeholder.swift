// ChatTemplateTests
