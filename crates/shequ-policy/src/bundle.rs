use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::engine::PolicyError;

/// The most files a bundle may hold.
pub const BUNDLE_FILES_MAX: usize = 256;
/// The largest file a bundle may hold, in bytes.
pub const BUNDLE_FILE_BYTES_MAX: usize = 1024 * 1024;

/// A set of Rego files, by relative path, and their content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBundle {
    files: BTreeMap<String, String>,
    digest: String,
}

impl PolicyBundle {
    /// The bundle shipped in this build.
    pub fn embedded() -> Self {
        let mut files = BTreeMap::new();
        collect(&crate::POLICIES, &mut files);
        Self::from_files(files).expect("the shipped bundle is within the limits")
    }

    /// A bundle from its files, e.g. as recorded in the log.
    pub fn from_files(files: BTreeMap<String, String>) -> Result<Self, PolicyError> {
        if files.is_empty() || files.len() > BUNDLE_FILES_MAX {
            return Err(PolicyError::Bundle(format!(
                "a bundle holds 1–{BUNDLE_FILES_MAX} files, not {}",
                files.len()
            )));
        }
        if let Some((path, _)) = files.iter().find(|(_, text)| text.len() > BUNDLE_FILE_BYTES_MAX) {
            return Err(PolicyError::Bundle(format!("{path} is larger than {BUNDLE_FILE_BYTES_MAX} bytes")));
        }
        let digest = digest(&files);
        Ok(Self { files, digest })
    }

    /// SHA-256, hex, over every file in path order: `path ‖ 0x00 ‖ u64 length ‖ text`.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }
}

fn digest(files: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (path, text) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Every `.rego` file below `directory` that is not a test.
fn collect(directory: &include_dir::Dir<'static>, files: &mut BTreeMap<String, String>) {
    for entry in directory.entries() {
        match entry {
            include_dir::DirEntry::Dir(child) => collect(child, files),
            include_dir::DirEntry::File(file) => {
                let path = file.path().to_string_lossy().replace('\\', "/");
                if path.ends_with(".rego") && !path.ends_with("_test.rego") {
                    let text = file.contents_utf8().expect("policy files are UTF-8");
                    files.insert(path, text.to_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_bundle_holds_the_policies_and_not_their_tests() {
        let bundle = PolicyBundle::embedded();
        let paths: Vec<&str> = bundle.files().keys().map(String::as_str).collect();
        assert_eq!(paths, ["access/access.rego", "authz/authz.rego", "routing/routing.rego"]);
        assert_eq!(bundle.digest().len(), 64);
    }

    #[test]
    fn the_digest_covers_paths_and_text() {
        let files = |path: &str, text: &str| BTreeMap::from([(path.to_owned(), text.to_owned())]);
        let original = PolicyBundle::from_files(files("a.rego", "package a")).unwrap();
        assert_eq!(original, PolicyBundle::from_files(files("a.rego", "package a")).unwrap());
        assert_ne!(
            original.digest(),
            PolicyBundle::from_files(files("b.rego", "package a")).unwrap().digest()
        );
        assert_ne!(
            original.digest(),
            PolicyBundle::from_files(files("a.rego", "package b")).unwrap().digest()
        );
        assert!(PolicyBundle::from_files(BTreeMap::new()).is_err());
    }
}
