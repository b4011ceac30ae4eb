//! Cross-field rules of the configuration (placeholder, filled by the config work).
