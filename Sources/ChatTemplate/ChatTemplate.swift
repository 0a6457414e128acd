// ChatTemplate module.
