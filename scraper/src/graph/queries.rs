//! Typed queries compiled by graphql_client from `graphql/*.graphql` against the subgraph's
//! schema.
#![allow(missing_docs, clippy::all)]

use graphql_client::GraphQLQuery;

/// The subgraph's BigInt: a decimal string.
pub type BigInt = String;
/// The subgraph's Bytes: a 0x-hex string.
pub type Bytes = String;

/// `_meta { block { number } hasIndexingErrors }`.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "graphql/schema.graphql",
    query_path = "graphql/meta.graphql",
    response_derives = "Debug"
)]
pub struct Meta;

/// The two-alias page query.
#[derive(GraphQLQuery)]
#[graphql(
    schema_path = "graphql/schema.graphql",
    query_path = "graphql/page.graphql",
    response_derives = "Debug"
)]
pub struct Page;
