//! Pinning backends: IPFS Cluster's REST API and the IPFS Pinning Service API.
