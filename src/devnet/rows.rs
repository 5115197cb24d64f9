//! Token lists rendered in one pass.
//!
//! async-graphql resolves every field of every object as its own boxed future with its own
//! context; for a page of 1,000 tokens with 14 fields that overhead, not the data, set the
//! devnet's speed (about 16 ms a page). When a token list's selection is only plain fields
//! of Token, TokenContract and Owner (aliases and fragments allowed; no arguments, no
//! directives, no nested lists), this module plans the selection once and renders the rows
//! straight into a response value. async-graphql still parses, validates and executes the
//! query; anything else falls back to its ordinary resolution, and tests check both paths
//! give the same response.

use std::borrow::Cow;
use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, FragmentDefinition, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};

use super::chain::Chain;
use super::query::hex0x;
use super::schema::Token;

/// A token list: the rows and, when the selection allows, the plan that renders them.
pub struct TokenRows {
    /// The rows, in order.
    rows: Vec<Token>,
    /// How to render them in one pass, if the selection is plain.
    plan: Option<TokenPlan>,
}

impl TokenRows {
    /// Rows for the list field `ctx` is resolving; `one_pass` allows a plan.
    pub fn new(ctx: &Context<'_>, rows: Vec<Token>, one_pass: bool) -> Self {
        let plan = if one_pass { TokenPlan::of(ctx) } else { None };
        TokenRows { rows, plan }
    }
}

impl OutputType for TokenRows {
    fn type_name() -> Cow<'static, str> {
        <Vec<Token> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Token> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Token> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match &self.plan {
            Some(plan) => Ok(Value::List(
                self.rows.iter().map(|t| plan.render(t)).collect(),
            )),
            None => OutputType::resolve(&self.rows, ctx, field).await,
        }
    }
}

/// A Token field the plan renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenLeaf {
    /// `id`.
    Id,
    /// `tokenID`.
    TokenId,
    /// `mintTime`.
    MintTime,
    /// `tokenURI`.
    TokenUri,
    /// `blockNumber`.
    BlockNumber,
    /// `blockHash`.
    BlockHash,
    /// `__typename`.
    Typename,
}

/// A TokenContract field the plan renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ContractLeaf {
    /// `id`.
    Id,
    /// `name`.
    Name,
    /// `symbol`.
    Symbol,
    /// `doAllAddressesOwnTheirIdByDefault`.
    DoAll,
    /// `supportsEIP721Metadata`.
    SupportsMetadata,
    /// `__typename`.
    Typename,
}

/// An Owner field the plan renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerLeaf {
    /// `id`.
    Id,
    /// `__typename`.
    Typename,
}

/// One response key of a token.
#[derive(Clone, Debug)]
enum TokenPart {
    /// A scalar.
    Leaf(TokenLeaf),
    /// `contract { ... }`.
    Contract(Vec<(Name, ContractLeaf)>),
    /// `owner { ... }`.
    Owner(Vec<(Name, OwnerLeaf)>),
}

/// What to render for each token, by response key, in response order.
#[derive(Clone, Debug)]
struct TokenPlan {
    /// The keys.
    parts: Vec<(Name, TokenPart)>,
}

/// Fragment definitions of the query, by name.
type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

impl TokenPlan {
    /// The plan for the list field `ctx` resolves, or `None` when the selection needs
    /// async-graphql's general resolution.
    fn of(ctx: &Context<'_>) -> Option<TokenPlan> {
        // `item` and `query_env` are public but hidden from docs in async-graphql 7; the
        // public `SelectionField` flattens fragments without showing their directives,
        // which a plan must see to refuse them.
        let fragments = &ctx.query_env.fragments;
        let fields = plain_fields(&ctx.item.node.selection_set.node, fragments, "Token")?;
        let mut parts: Vec<(Name, TokenPart)> = Vec::new();
        for f in fields {
            let key = f.response_key().node.clone();
            let part = match f.name.node.as_str() {
                "id" => TokenPart::Leaf(TokenLeaf::Id),
                "tokenID" => TokenPart::Leaf(TokenLeaf::TokenId),
                "mintTime" => TokenPart::Leaf(TokenLeaf::MintTime),
                "tokenURI" => TokenPart::Leaf(TokenLeaf::TokenUri),
                "blockNumber" => TokenPart::Leaf(TokenLeaf::BlockNumber),
                "blockHash" => TokenPart::Leaf(TokenLeaf::BlockHash),
                "__typename" => TokenPart::Leaf(TokenLeaf::Typename),
                "contract" => {
                    let sub = plain_fields(&f.selection_set.node, fragments, "TokenContract")?;
                    let mut leaves = Vec::new();
                    for s in sub {
                        let leaf = match s.name.node.as_str() {
                            "id" => ContractLeaf::Id,
                            "name" => ContractLeaf::Name,
                            "symbol" => ContractLeaf::Symbol,
                            "doAllAddressesOwnTheirIdByDefault" => ContractLeaf::DoAll,
                            "supportsEIP721Metadata" => ContractLeaf::SupportsMetadata,
                            "__typename" => ContractLeaf::Typename,
                            _ => return None,
                        };
                        leaves.push((s.response_key().node.clone(), leaf));
                    }
                    TokenPart::Contract(leaves)
                }
                "owner" => {
                    let sub = plain_fields(&f.selection_set.node, fragments, "Owner")?;
                    let mut leaves = Vec::new();
                    for s in sub {
                        let leaf = match s.name.node.as_str() {
                            "id" => OwnerLeaf::Id,
                            "__typename" => OwnerLeaf::Typename,
                            _ => return None,
                        };
                        leaves.push((s.response_key().node.clone(), leaf));
                    }
                    TokenPart::Owner(leaves)
                }
                _ => return None,
            };
            merge(&mut parts, key, part);
        }
        Some(TokenPlan { parts })
    }

    /// One token as a response object.
    fn render(&self, token: &Token) -> Value {
        let chain: &Chain = token.chain();
        let t = token.record();
        let mut out = IndexMap::with_capacity(self.parts.len());
        for (key, part) in &self.parts {
            let value = match part {
                TokenPart::Leaf(leaf) => match leaf {
                    TokenLeaf::Id => Value::String(t.graph_id.to_string()),
                    TokenLeaf::TokenId => Value::String(t.token_id_decimal().to_owned()),
                    TokenLeaf::MintTime => {
                        Value::String(chain.block_timestamp(t.block).to_string())
                    }
                    TokenLeaf::TokenUri => Value::String(chain.token_uri(t)),
                    TokenLeaf::BlockNumber => Value::String(t.block.to_string()),
                    TokenLeaf::BlockHash => Value::String(hex0x(&chain.block_hash(t.block))),
                    TokenLeaf::Typename => Value::String("Token".to_owned()),
                },
                TokenPart::Contract(leaves) => {
                    let c = &chain.contracts()[usize::from(t.contract)];
                    let mut obj = IndexMap::with_capacity(leaves.len());
                    for (k, leaf) in leaves {
                        let text = |s: &Option<String>| {
                            s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
                        };
                        let v = match leaf {
                            ContractLeaf::Id => Value::String(c.id.clone()),
                            ContractLeaf::Name => text(&c.name),
                            ContractLeaf::Symbol => text(&c.symbol),
                            ContractLeaf::DoAll => Value::Boolean(false),
                            ContractLeaf::SupportsMetadata => Value::Boolean(c.supports_metadata),
                            ContractLeaf::Typename => Value::String("TokenContract".to_owned()),
                        };
                        obj.insert(k.clone(), v);
                    }
                    Value::Object(obj)
                }
                TokenPart::Owner(leaves) => {
                    let o = &chain.owners()[t.owner_at(token.block()) as usize];
                    let mut obj = IndexMap::with_capacity(leaves.len());
                    for (k, leaf) in leaves {
                        let v = match leaf {
                            OwnerLeaf::Id => Value::String(o.id.clone()),
                            OwnerLeaf::Typename => Value::String("Owner".to_owned()),
                        };
                        obj.insert(k.clone(), v);
                    }
                    Value::Object(obj)
                }
            };
            out.insert(key.clone(), value);
        }
        Value::Object(out)
    }
}

/// Adds a response key to a plan, merging repeated keys as GraphQL does (first position
/// wins; sub-selections of repeated object fields are combined).
fn merge(parts: &mut Vec<(Name, TokenPart)>, key: Name, part: TokenPart) {
    let Some((_, existing)) = parts.iter_mut().find(|(k, _)| *k == key) else {
        parts.push((key, part));
        return;
    };
    match (existing, part) {
        (TokenPart::Contract(have), TokenPart::Contract(more)) => merge_leaves(have, more),
        (TokenPart::Owner(have), TokenPart::Owner(more)) => merge_leaves(have, more),
        // Validation guarantees a repeated key names the same field.
        _ => {}
    }
}

/// Adds leaves whose keys are new.
fn merge_leaves<L>(have: &mut Vec<(Name, L)>, more: Vec<(Name, L)>) {
    for (k, leaf) in more {
        if !have.iter().any(|(h, _)| *h == k) {
            have.push((k, leaf));
        }
    }
}

/// The fields of a selection set on `type_name`, through fragments, in order; `None` if any
/// field has arguments or any selection has directives (the plan does not evaluate them).
fn plain_fields<'a>(
    set: &'a SelectionSet,
    fragments: &'a Fragments,
    type_name: &str,
) -> Option<Vec<&'a Field>> {
    let mut out = Vec::new();
    collect(set, fragments, type_name, &mut out, 0)?;
    Some(out)
}

/// How deep fragments may nest before the plan gives up (validation rejects cycles).
const FRAGMENT_DEPTH_MAX: usize = 16;

/// Appends the fields of `set` to `out`.
fn collect<'a>(
    set: &'a SelectionSet,
    fragments: &'a Fragments,
    type_name: &str,
    out: &mut Vec<&'a Field>,
    depth: usize,
) -> Option<()> {
    if depth > FRAGMENT_DEPTH_MAX {
        return None;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                let f = &f.node;
                if !f.arguments.is_empty() || !f.directives.is_empty() {
                    return None;
                }
                out.push(f);
            }
            Selection::FragmentSpread(spread) => {
                if !spread.node.directives.is_empty() {
                    return None;
                }
                let def = &fragments.get(&spread.node.fragment_name.node)?.node;
                if def.type_condition.node.on.node.as_str() != type_name
                    || !def.directives.is_empty()
                {
                    return None;
                }
                collect(
                    &def.selection_set.node,
                    fragments,
                    type_name,
                    out,
                    depth + 1,
                )?;
            }
            Selection::InlineFragment(inline) => {
                let inline = &inline.node;
                let on = inline
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.as_str());
                if !inline.directives.is_empty() || on.is_some_and(|on| on != type_name) {
                    return None;
                }
                collect(
                    &inline.selection_set.node,
                    fragments,
                    type_name,
                    out,
                    depth + 1,
                )?;
            }
        }
    }
    Some(())
}
