//! The pretext tasks, one file per paper: rotation prediction (Gidaris et al. 2018),
//! inpainting (Pathak et al. 2016) and masked autoencoders (He et al. 2022).
pub mod inpainting;
pub mod mae;
pub mod rotation;
