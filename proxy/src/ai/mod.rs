//! The AI gateway: forwarding to OpenAI, Anthropic and DeepSeek with the user's key, and what each
//! call cost.

pub mod pricing;
pub mod usage;
