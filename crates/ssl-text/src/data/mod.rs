//! Text in: the pretraining corpus read and packed into fixed-length sequences of a WordPiece
//! tokenizer's ids, the masked-LM batches, and the labeled evaluation data.
pub mod corpus;
pub mod dataset;
pub mod labeled;
pub mod masking;
pub mod packing;
pub mod tokenizer;
