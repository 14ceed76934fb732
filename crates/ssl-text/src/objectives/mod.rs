//! The pretraining objectives, one file per paper: masked language modelling (Devlin et al.
//! 2019, with Cramming's settings).
pub mod mlm;
