//! Stratified few-label subsets drawn from the training split.
use crate::loader::mix_seed;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Indices of `k` examples per class (fewer if a class has fewer), drawn with `seed`.
/// The same `(labels, k, seed)` always gives the same subset, and a larger `k` with the same seed
/// contains the smaller subset (nested subsets make label-efficiency curves less noisy).
///
/// ```
/// let labels = vec![0, 1, 0, 1, 0, 1, 2, 2];
/// let idx = ssl_core::eval::subsets::stratified(&labels, 3, 2, 7);
/// assert_eq!(idx.len(), 6);
/// ```
pub fn stratified(labels: &[i64], num_classes: i64, k: usize, seed: u64) -> Vec<i64> {
    let mut out = Vec::new();
    for c in 0..num_classes {
        let mut members: Vec<i64> = labels.iter().enumerate().filter(|(_, &l)| l == c).map(|(i, _)| i as i64).collect();
        members.shuffle(&mut ChaCha8Rng::seed_from_u64(mix_seed(&[seed, c as u64, 0x5AB5])));
        out.extend(members.into_iter().take(k));
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_takes_k_per_class_and_nests() {
        let labels: Vec<i64> = (0..100).map(|i| i % 4).collect();
        let small = stratified(&labels, 4, 3, 1);
        let big = stratified(&labels, 4, 10, 1);
        assert_eq!(small.len(), 12);
        for c in 0..4 {
            assert_eq!(small.iter().filter(|&&i| labels[i as usize] == c).count(), 3);
        }
        assert!(small.iter().all(|i| big.contains(i)));
        assert_ne!(stratified(&labels, 4, 3, 2), small);
    }
}
