//! The encoders: a CIFAR-style ResNet ([`resnet`]) and a ViT ([`vit`]) behind one
//! [`encoder::EncoderConfig`], and their FLOP counts ([`flops`]).
pub mod encoder;
pub mod flops;
pub mod resnet;
pub mod vit;
