//! Other tools' formats: [`export`] writes a ViT as timm / HF and a ResNet as safetensors with
//! its own PyTorch module; [`import`] reads HF ViTs for `--init-from`.
pub mod export;
pub mod import;
