//! The flags of `pretrain-speech`: the shared run options ([`ssl_core::run::RunOptions`]) and
//! the modality's own. The same struct is a config file's keys and `config.json`'s
//! `config.flags`.
use serde::{Deserialize, Serialize};
use ssl_core::run::RunOptions;
use std::path::PathBuf;

/// Flags of `pretrain-speech` (also the keys of its config files).
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct SpeechFlags {
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunOptions,
    /// Unlabeled audio: folders of WAV (or FLAC) files, comma-separated (class subfolders are ignored).
    /// Default: the committed clips under datasets/speech (unlabeled/ and digits/train/).
    #[arg(long, value_delimiter = ',')]
    pub data: Option<Vec<PathBuf>>,
    /// Reader of --data: wav-folder (every .wav below it) or flac-folder (every .wav and .flac,
    /// e.g. LibriSpeech).
    #[arg(long, default_value = "wav-folder")]
    pub data_format: String,
    /// Labeled evaluation data: a folder with `train/<class>/` and `test/<class>/` (default: the
    /// committed spoken digits, datasets/speech/digits).
    #[arg(long)]
    pub labeled: Option<PathBuf>,
    /// A second test set with the same classes (e.g. real recorded digits), classified by linear
    /// probes trained on --labeled's train/ (default: datasets/speech/real-digits with the
    /// default --labeled).
    #[arg(long)]
    pub extra_test: Option<PathBuf>,
    /// best-rq, contrastive or reconstruct.
    #[arg(long, default_value = "best-rq")]
    pub objective: String,
    /// tiny or small.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// A LayerNorm after the positional convolution: the encoder of runs made before this
    /// option existed. Without it (the default) the encoder is HuggingFace's pre-LN
    /// Wav2Vec2Model exactly and exports to it; with it, it does not export.
    #[arg(long)]
    #[serde(default)]
    pub pos_norm: bool,
    /// Probability that a frame starts a masked span (wav2vec 2.0: 0.065).
    #[arg(long)]
    pub mask_prob: Option<f64>,
    /// Masked span length in frames (wav2vec 2.0: 10).
    #[arg(long)]
    pub mask_length: Option<usize>,
    /// Length of the random pretraining crops in seconds.
    #[arg(long)]
    pub crop_seconds: Option<f64>,
    /// Length the evaluation clips are centre-cropped or padded to, in seconds.
    #[arg(long)]
    pub eval_seconds: Option<f64>,
    /// Features for the evaluation: all-layers (mean-pooled, concatenated), all-layers-mean-std
    /// (mean and std over time) or last.
    #[arg(long)]
    pub pooling: Option<String>,
    /// At most this many files of --data are decoded (evenly spaced over the sorted list).
    #[arg(long, default_value_t = 20000)]
    pub max_files: usize,
    /// Crop on the training device: the decoded corpus stays there as one tensor and each batch
    /// is one gather of it (the same samples and span masks as the loader's crops).
    #[arg(long)]
    #[serde(default)]
    pub augment_on_device: bool,
}
