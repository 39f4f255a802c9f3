//! `--initial-cluster`, and the member and cluster ids derived from it exactly as etcd
//! derives them, so that a member bootstrapped by mnemo reports the ids etcd would
//! (the default single member is `8e9e05c52164694d` in cluster `cdf818194e3a8c32`).
//!
//! * member id = the first 8 bytes, big-endian, of
//!   SHA-1(the member's peer URLs, sorted, concatenated ‖ `--initial-cluster-token`)
//! * cluster id = the first 8 bytes, big-endian, of
//!   SHA-1(every member id, sorted, each as 8 big-endian bytes)

use std::collections::BTreeMap;

use super::urls::Url;

/// One member of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub id: u64,
    /// In the order given.
    pub peer_urls: Vec<Url>,
}

/// Parses `name1=url1,name1=url2,name2=url3` (a name may repeat to give it several URLs)
/// into the members sorted by name, their ids derived with `token`.
pub fn parse_initial_cluster(text: &str, token: &str) -> Result<Vec<InitialMember>, String> {
    let mut by_name: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for entry in text.split(',').filter(|e| !e.trim().is_empty()) {
        let (name, url) = entry.split_once('=').ok_or_else(|| {
            format!("--initial-cluster entry {entry:?} is not of the form name=url")
        })?;
        let url = Url::parse(url).map_err(|e| format!("error setting up initial cluster: {e}"))?;
        by_name
            .entry(name.trim().to_string())
            .or_default()
            .push(url);
    }
    let mut seen = std::collections::HashSet::new();
    for url in by_name.values().flatten() {
        if !seen.insert(url.to_string()) {
            return Err(format!("initial cluster {text} has duplicate url"));
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, peer_urls)| InitialMember {
            id: member_id(&peer_urls, token),
            name,
            peer_urls,
        })
        .collect())
}

/// etcd's `computeMemberId` without the time salt (which only `member add` uses).
pub fn member_id(peer_urls: &[Url], token: &str) -> u64 {
    let mut urls: Vec<String> = peer_urls.iter().map(Url::to_string).collect();
    urls.sort();
    let mut hasher = sha1_smol::Sha1::new();
    for url in &urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(token.as_bytes());
    first_u64(&hasher.digest().bytes())
}

/// etcd's `RaftCluster.genID`.
pub fn cluster_id(member_ids: impl IntoIterator<Item = u64>) -> u64 {
    let mut ids: Vec<u64> = member_ids.into_iter().collect();
    ids.sort_unstable();
    let mut hasher = sha1_smol::Sha1::new();
    for id in ids {
        hasher.update(&id.to_be_bytes());
    }
    first_u64(&hasher.digest().bytes())
}

fn first_u64(digest: &[u8; 20]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_default_ids() {
        let members =
            parse_initial_cluster("default=http://localhost:2380", "etcd-cluster").unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "default");
        assert_eq!(members[0].id, 0x8e9e_05c5_2164_694d);
        assert_eq!(cluster_id([members[0].id]), 0xcdf8_1819_4e3a_8c32);
    }

    #[test]
    fn ids_ignore_url_order_and_depend_on_token() {
        let a =
            parse_initial_cluster("m=http://10.0.0.1:2380,m=http://10.0.0.2:2380", "t").unwrap();
        let b =
            parse_initial_cluster("m=http://10.0.0.2:2380,m=http://10.0.0.1:2380", "t").unwrap();
        assert_eq!(a[0].id, b[0].id);
        assert_eq!(a[0].peer_urls.len(), 2);
        let c =
            parse_initial_cluster("m=http://10.0.0.1:2380,m=http://10.0.0.2:2380", "u").unwrap();
        assert_ne!(a[0].id, c[0].id);
        assert_eq!(cluster_id([1, 2]), cluster_id([2, 1]));
    }

    #[test]
    fn three_members_sorted_by_name() {
        let m = parse_initial_cluster(
            "n3=http://127.0.0.1:3,n1=http://127.0.0.1:1,n2=http://127.0.0.1:2",
            "etcd-cluster",
        )
        .unwrap();
        let names: Vec<_> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
    }

    #[test]
    fn refuses_malformed_clusters() {
        assert!(parse_initial_cluster("foo", "t")
            .unwrap_err()
            .contains("not of the form name=url"));
        assert!(parse_initial_cluster("a=foo", "t")
            .unwrap_err()
            .contains("URL scheme must be http or https"));
        assert_eq!(
            parse_initial_cluster("a=http://h:1,b=http://h:1", "t").unwrap_err(),
            "initial cluster a=http://h:1,b=http://h:1 has duplicate url"
        );
        assert_eq!(parse_initial_cluster("", "t").unwrap(), vec![]);
    }
}
