//! The Merkle tree over the log, exactly as RFC 6962 §2.1 (and RFC 9162 §2.1) define it:
//! leaf = SHA-256(0x00 ‖ the event's canonical bytes), node = SHA-256(0x01 ‖ left ‖ right),
//! the tree of n leaves split at the largest power of two below n. Proofs are generated as
//! RFC 6962's PATH and PROOF, and verified with RFC 9162's algorithms, so that any verifier
//! written from the RFC accepts them.

use std::collections::BTreeMap;
use std::ops::Range;

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256(0x00 ‖ bytes): the hash of one leaf.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// SHA-256(0x01 ‖ left ‖ right): the hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// MTH(D[n]) over leaf hashes; the empty tree's root is SHA-256 of nothing.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = usize::try_from(split(n as u64)).expect("below n, a slice length");
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// MTH computed leaf by leaf in O(log n) memory, for logs too long to hold their leaves.
///
/// The tree of n leaves is the perfect subtrees of n's binary digits, largest (leftmost) first,
/// joined from the right: MTH splits at the largest power of two below n, whose left side is
/// perfect. The builder keeps one root per binary digit of n, merging equal sizes as they come.
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Roots of perfect subtrees, with their sizes: powers of two, strictly decreasing.
    subtrees: Vec<(u64, Hash)>,
    size: u64,
}

impl RootBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next leaf's hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (1u64, leaf);
        while let Some(&(size, left)) = self.subtrees.last() {
            if size != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (size * 2, node_hash(&left, &node.1));
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The number of leaves added.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MTH of the leaves added so far; equal to [`root`] of them.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        match subtrees.next() {
            None => Sha256::digest([]).into(),
            Some(&(_, last)) => subtrees.fold(last, |right, (_, left)| node_hash(left, &right)),
        }
    }
}

/// PATH(m, D[n]): the inclusion proof of leaf `index` (0-based) in the tree of `leaves`.
/// `None` when `index` is not in the tree.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    let ranges = inclusion_ranges(index as u64, leaves.len() as u64)?;
    Some(ranges.into_iter().map(|range| root(&leaves[as_usize(range)])).collect())
}

/// PROOF(m, D[n]): the consistency proof from the first `old_size` leaves to all of them.
/// `None` unless 0 < old_size ≤ n.
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    let ranges = consistency_ranges(old_size as u64, leaves.len() as u64)?;
    Some(ranges.into_iter().map(|range| root(&leaves[as_usize(range)])).collect())
}

/// The leaf ranges whose roots, in this order, are PATH(index, D[size]): disjoint, none
/// holding `index`. `None` when `index` is not in the tree.
pub fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<Range<u64>>> {
    if index >= size {
        return None;
    }
    let mut ranges = Vec::new();
    path(index, 0..size, &mut ranges);
    Some(ranges)
}

/// The leaf ranges whose roots, in this order, are PROOF(old_size, D[size]): disjoint.
/// `None` unless 0 < old_size ≤ size.
pub fn consistency_ranges(old_size: u64, size: u64) -> Option<Vec<Range<u64>>> {
    if old_size == 0 || old_size > size {
        return None;
    }
    let mut ranges = Vec::new();
    subproof(old_size, 0..size, true, &mut ranges);
    Some(ranges)
}

/// The roots of a log's perfect subtrees of `chunk` leaves and more, aligned as MTH splits
/// them, over the whole chunks of its first leaves: what proofs need of a tree too long to
/// read for each of them (ADR 0019). With them and the leaves of at most a few chunks, the
/// root of any range that MTH's recursion meets is O(log n) hashes away ([`range_root`]).
#[derive(Debug, Clone)]
pub struct Subtrees {
    chunk: u64,
    /// `levels[j][i]`: the root of leaves `[i·2^j·chunk, (i+1)·2^j·chunk)`.
    levels: Vec<Vec<Hash>>,
}

impl Subtrees {
    /// No chunk yet; `chunk` is a power of two.
    pub fn new(chunk: u64) -> Self {
        assert!(chunk.is_power_of_two(), "a chunk of 2^k leaves");
        Self { chunk, levels: Vec::new() }
    }

    /// The leaves the held chunks cover: a multiple of `chunk`.
    pub fn leaves(&self) -> u64 {
        self.levels.first().map_or(0, |chunks| chunks.len() as u64 * self.chunk)
    }

    /// Adds the root of the next chunk (leaves `[self.leaves(), self.leaves() + chunk)`), and
    /// of every larger subtree it completes.
    pub fn push(&mut self, chunk_root: Hash) {
        let mut node = chunk_root;
        for level in 0.. {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let nodes = &mut self.levels[level];
            nodes.push(node);
            match nodes.len() % 2 {
                1 => return,
                _ => node = node_hash(&nodes[nodes.len() - 2], &nodes[nodes.len() - 1]),
            }
        }
    }

    /// The root of `range` if it is a perfect subtree of at least a chunk, aligned to its size,
    /// and held.
    fn get(&self, range: &Range<u64>) -> Option<Hash> {
        let n = range.end - range.start;
        if n < self.chunk || !n.is_power_of_two() || range.start % n != 0 {
            return None;
        }
        let level = usize::try_from((n / self.chunk).trailing_zeros()).ok()?;
        self.levels.get(level)?.get(usize::try_from(range.start / n).ok()?).copied()
    }
}

/// MTH of the leaves in `range` (non-empty), from the perfect subtrees held and the leaves of
/// the chunks in `leaves` (chunk index → its leaves from the chunk's start; the last chunk of
/// a tree may hold fewer than a whole chunk). `Err(chunk)` names a chunk whose leaves are
/// needed and not given.
pub fn range_root(
    range: Range<u64>,
    subtrees: &Subtrees,
    leaves: &BTreeMap<u64, Vec<Hash>>,
) -> Result<Hash, u64> {
    debug_assert!(range.start < range.end);
    if let Some(root) = subtrees.get(&range) {
        return Ok(root);
    }
    let chunk = range.start / subtrees.chunk;
    if (range.end - 1) / subtrees.chunk == chunk {
        let start = chunk * subtrees.chunk;
        let held = leaves.get(&chunk).ok_or(chunk)?;
        let within = as_usize(range.start - start..range.end - start);
        return Ok(root(held.get(within).expect("a chunk's leaves are given up to the tree's size")));
    }
    let middle = range.start + split(range.end - range.start);
    Ok(node_hash(
        &range_root(range.start..middle, subtrees, leaves)?,
        &range_root(middle..range.end, subtrees, leaves)?,
    ))
}

fn as_usize(range: Range<u64>) -> Range<usize> {
    let bound = |at: u64| usize::try_from(at).expect("a range within a slice's length");
    bound(range.start)..bound(range.end)
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf` at `index` in the tree of `size` with `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], expected_root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut first, mut second) = (index, size - 1);
    let mut result = *leaf;
    for sibling in proof {
        if second == 0 {
            return false;
        }
        if first & 1 == 1 || first == second {
            result = node_hash(sibling, &result);
            while first & 1 == 0 && first != 0 {
                first >>= 1;
                second >>= 1;
            }
        } else {
            result = node_hash(&result, sibling);
        }
        first >>= 1;
        second >>= 1;
    }
    second == 0 && result == *expected_root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree of `old_size` with `old_root` to be a prefix
/// of the tree of `new_size` with `new_root`?
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first_hash, rest)) = path.split_first() else { return false };
    let (mut first, mut second) = (old_size - 1, new_size - 1);
    while first & 1 == 1 {
        first >>= 1;
        second >>= 1;
    }
    let (mut old_result, mut new_result) = (*first_hash, *first_hash);
    for sibling in rest {
        if second == 0 {
            return false;
        }
        if first & 1 == 1 || first == second {
            old_result = node_hash(sibling, &old_result);
            new_result = node_hash(sibling, &new_result);
            while first & 1 == 0 && first != 0 {
                first >>= 1;
                second >>= 1;
            }
        } else {
            new_result = node_hash(&new_result, sibling);
        }
        first >>= 1;
        second >>= 1;
    }
    old_result == *old_root && new_result == *new_root && second == 0
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// RFC 6962 §2.1.1's PATH, over leaf ranges instead of their hashes.
fn path(index: u64, leaves: Range<u64>, proof: &mut Vec<Range<u64>>) {
    let n = leaves.end - leaves.start;
    if n <= 1 {
        return;
    }
    let k = split(n);
    let middle = leaves.start + k;
    match index < k {
        true => {
            path(index, leaves.start..middle, proof);
            proof.push(middle..leaves.end);
        }
        false => {
            path(index - k, middle..leaves.end, proof);
            proof.push(leaves.start..middle);
        }
    }
}

/// RFC 6962 §2.1.2's SUBPROOF, over leaf ranges instead of their hashes.
fn subproof(m: u64, leaves: Range<u64>, complete: bool, proof: &mut Vec<Range<u64>>) {
    let n = leaves.end - leaves.start;
    if m == n {
        if !complete {
            proof.push(leaves);
        }
        return;
    }
    let k = split(n);
    let middle = leaves.start + k;
    match m <= k {
        true => {
            subproof(m, leaves.start..middle, complete, proof);
            proof.push(middle..leaves.end);
        }
        false => {
            subproof(m - k, middle..leaves.end, false, proof);
            proof.push(leaves.start..middle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the Certificate Transparency test vectors.
    fn ct_leaves() -> Vec<Hash> {
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
            .iter()
            .map(|data| leaf_hash(&hex::decode(data).unwrap()))
            .collect()
    }

    fn hashes(texts: &[&str]) -> Vec<Hash> {
        texts.iter().map(|text| hex::decode(text).unwrap().try_into().unwrap()).collect()
    }

    #[test]
    fn roots_match_the_certificate_transparency_vectors() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = ct_leaves();
        for (size, expected) in (1..=8).zip(expected) {
            assert_eq!(hex::encode(root(&leaves[..size])), expected, "tree of {size}");
        }
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_streaming_root_equals_the_recursive_one() {
        let leaves: Vec<Hash> = (0u32..70).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        let mut builder = RootBuilder::new();
        assert_eq!(builder.root(), root(&[]));
        for size in 1..=leaves.len() {
            builder.push(leaves[size - 1]);
            assert_eq!(builder.size(), size as u64);
            assert_eq!(builder.root(), root(&leaves[..size]), "tree of {size}");
        }
        let mut vectors = RootBuilder::new();
        ct_leaves().into_iter().for_each(|leaf| vectors.push(leaf));
        assert_eq!(
            hex::encode(vectors.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    #[test]
    fn proofs_match_the_certificate_transparency_vectors() {
        let leaves = ct_leaves();
        let inclusion = hashes(&[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ]);
        assert_eq!(inclusion_proof(&leaves, 0).unwrap(), inclusion);
        let inclusion = hashes(&[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ]);
        assert_eq!(inclusion_proof(&leaves, 5).unwrap(), inclusion);
        let consistency = hashes(&[
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
        ]);
        assert_eq!(consistency_proof(&leaves[..7], 3).unwrap(), consistency);
        assert_eq!(
            consistency_proof(&leaves, 4).unwrap(),
            hashes(&["6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"])
        );
    }

    #[test]
    fn proofs_from_subtrees_and_a_few_chunks_equal_proofs_from_all_leaves() {
        let leaves: Vec<Hash> = (0u32..40).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        for chunk in [1, 2, 4, 8] {
            // Subtrees over the whole chunks of a tree of `size`, and the leaves of the chunks
            // asked for, as `EventLog` gives them: each read up to the tree's size.
            let roots = |ranges: &[Range<u64>], size: usize| {
                let mut subtrees = Subtrees::new(chunk);
                for whole in leaves[..size].chunks_exact(chunk as usize) {
                    subtrees.push(root(whole));
                }
                assert_eq!(subtrees.leaves(), size as u64 / chunk * chunk);
                let mut given = BTreeMap::new();
                loop {
                    let found: Result<Vec<Hash>, u64> =
                        ranges.iter().map(|range| range_root(range.clone(), &subtrees, &given)).collect();
                    match found {
                        Ok(found) => return (found, given.len()),
                        Err(asked) => {
                            let start = (asked * chunk) as usize;
                            let end = (start + chunk as usize).min(size);
                            assert!(
                                given.insert(asked, leaves[start..end].to_vec()).is_none(),
                                "asked twice"
                            );
                        }
                    }
                }
            };
            for size in 1..=leaves.len() {
                let whole = 0..size as u64;
                assert_eq!(roots(std::slice::from_ref(&whole), size).0, [root(&leaves[..size])]);
                for index in 0..size {
                    // The path, the leaf and the root, as `EventLog::inclusion_proof` asks.
                    let mut ranges = inclusion_ranges(index as u64, size as u64).unwrap();
                    ranges.extend([index as u64..index as u64 + 1, 0..size as u64]);
                    let (mut found, read) = roots(&ranges, size);
                    assert_eq!(found.split_off(found.len() - 2), [leaves[index], root(&leaves[..size])]);
                    assert_eq!(found, inclusion_proof(&leaves[..size], index).unwrap());
                    assert!(read <= 2, "the leaf's chunk and the tree's last: {read}");
                }
                for old_size in 1..=size {
                    let mut ranges = consistency_ranges(old_size as u64, size as u64).unwrap();
                    ranges.extend([0..old_size as u64, 0..size as u64]);
                    let (mut found, read) = roots(&ranges, size);
                    assert_eq!(
                        found.split_off(found.len() - 2),
                        [root(&leaves[..old_size]), root(&leaves[..size])]
                    );
                    assert_eq!(found, consistency_proof(&leaves[..size], old_size).unwrap());
                    assert!(read <= 2, "the old tree's last chunk and the new one's: {read}");
                }
            }
        }
        assert_eq!(
            (inclusion_ranges(3, 3), consistency_ranges(0, 3), consistency_ranges(4, 3)),
            (None, None, None)
        );
    }

    #[test]
    fn every_generated_proof_verifies_and_no_altered_one_does() {
        let leaves: Vec<Hash> = (0u32..40).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        for size in 1..=leaves.len() {
            let tree = &leaves[..size];
            let tree_root = root(tree);
            for index in 0..size {
                let proof = inclusion_proof(tree, index).unwrap();
                let (index_u64, size_u64) = (index as u64, size as u64);
                assert!(
                    verify_inclusion(index_u64, size_u64, &tree[index], &proof, &tree_root),
                    "{index} in {size}"
                );
                let other = (index + 1) % size;
                if other != index {
                    assert!(!verify_inclusion(other as u64, size_u64, &tree[index], &proof, &tree_root));
                }
                if let Some(first) = proof.first() {
                    let mut altered = proof.clone();
                    altered[0] = node_hash(first, first);
                    assert!(!verify_inclusion(index_u64, size_u64, &tree[index], &altered, &tree_root));
                }
            }
            for old_size in 1..=size {
                let proof = consistency_proof(tree, old_size).unwrap();
                let old_root = root(&leaves[..old_size]);
                assert!(
                    verify_consistency(old_size as u64, size as u64, &old_root, &tree_root, &proof),
                    "{old_size}→{size}"
                );
                if old_size < size {
                    let wrong_old = root(&leaves[1..=old_size]);
                    assert!(!verify_consistency(
                        old_size as u64,
                        size as u64,
                        &wrong_old,
                        &tree_root,
                        &proof
                    ));
                    let mut altered = proof.clone();
                    let last = altered.len() - 1;
                    altered[last] = node_hash(&altered[last], &altered[last]);
                    assert!(!verify_consistency(
                        old_size as u64,
                        size as u64,
                        &old_root,
                        &tree_root,
                        &altered
                    ));
                }
            }
        }
        assert_eq!(inclusion_proof(&leaves, 40), None);
        assert_eq!(consistency_proof(&leaves, 0), None);
    }
}
