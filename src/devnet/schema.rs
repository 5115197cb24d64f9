//! The ERC-721 subgraph's GraphQL schema (the one in `scraper/graphql/schema.graphql`),
//! answered from a [`Chain`] by the query engine.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ID, InputObject, InputValueError,
    InputValueResult, Object, Scalar, ScalarType, Schema, SimpleObject, Value,
};
use primitive_types::U256;

use super::chain::{Chain, ContractInfo, MintedToken, OwnerInfo};
use super::filters::{AllFilter, OwnerFilter, TokenContractFilter, TokenFilter};
use super::query::{
    self, AllField, ContractField, Direction, Filter, Op, Operand, OwnerField, Scalar as Value_,
    TokenField, TokenQuery,
};
use super::rows::TokenRows;

/// The schema the devnet serves.
pub type SubgraphSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// Builds the schema. Per-request data is a [`Served`].
pub fn build_schema() -> SubgraphSchema {
    // graph-node's schema also declares a BigDecimal scalar; no field of this subgraph uses
    // it, and async-graphql drops unused types, so it is absent here.
    Schema::build(Query, EmptyMutation, EmptySubscription).finish()
}

/// The subgraph's fixed facts: its deployment and what it can answer.
#[derive(Clone, Debug)]
pub struct SubgraphInfo {
    /// Deployment id (`Qm...`), in `_meta` and in errors.
    pub deployment: String,
    /// Blocks below this are pruned: queries at them fail as graph-node's do.
    pub prune_before: u64,
    /// Whether the subgraph reports indexing errors.
    pub indexing_errors: bool,
}

/// What one request answers from: the chain as it was when the request arrived.
#[derive(Clone)]
pub struct Served {
    /// The chain.
    pub chain: Arc<Chain>,
    /// The subgraph's facts.
    pub info: Arc<SubgraphInfo>,
    /// Render plain token lists in one pass (see [`super::rows`]); off only in tests that
    /// compare with async-graphql's own resolution.
    pub one_pass: bool,
}

/// A BigInt: any size, sent as a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BigInt(pub U256);

/// Integer of any size, sent as a decimal string.
#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                U256::from_dec_str(s)
                    .map(BigInt)
                    .map_err(|_| InputValueError::custom(format!("`{s}` is not a valid BigInt")))
            }
            Value::String(s) => Err(InputValueError::custom(format!(
                "`{s}` is not a valid BigInt"
            ))),
            Value::Number(n) => n
                .as_u64()
                .map(|v| BigInt(U256::from(v)))
                .ok_or_else(|| InputValueError::custom(format!("`{n}` is not a valid BigInt"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(super::chain::decimal(self.0))
    }
}

/// Bytes, sent as `0x` and hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

/// Hex-encoded bytes, 0x-prefixed.
#[Scalar(name = "Bytes")]
impl ScalarType for Bytes {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(s) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        let hex = s.strip_prefix("0x").unwrap_or(s);
        let invalid = || InputValueError::custom(format!("`{s}` is not valid hex bytes"));
        if hex.len() % 2 != 0 {
            return Err(invalid());
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .map(Bytes)
            .ok_or_else(invalid)
    }

    fn to_value(&self) -> Value {
        Value::String(query::hex0x(&self.0))
    }
}

/// `OrderDirection`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
#[graphql(name = "OrderDirection")]
pub enum OrderDirection {
    /// Smallest first.
    #[default]
    #[graphql(name = "asc")]
    Asc,
    /// Largest first.
    #[graphql(name = "desc")]
    Desc,
}

impl From<Option<OrderDirection>> for Direction {
    fn from(d: Option<OrderDirection>) -> Self {
        match d {
            Some(OrderDirection::Desc) => Direction::Desc,
            _ => Direction::Asc,
        }
    }
}

/// `_SubgraphErrorPolicy_`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug, Default)]
#[graphql(name = "_SubgraphErrorPolicy_")]
pub enum SubgraphErrorPolicy {
    /// Answer even when the subgraph has indexing errors.
    #[graphql(name = "allow")]
    Allow,
    /// Refuse to answer when the subgraph has indexing errors.
    #[default]
    #[graphql(name = "deny")]
    Deny,
}

/// `Token_orderBy`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Token_orderBy")]
pub enum TokenOrderBy {
    /// By id.
    #[graphql(name = "id")]
    Id,
    /// By contract id.
    #[graphql(name = "contract")]
    Contract,
    /// By token id, numerically.
    #[graphql(name = "tokenID")]
    TokenId,
    /// By owner id.
    #[graphql(name = "owner")]
    Owner,
    /// By mint time.
    #[graphql(name = "mintTime")]
    MintTime,
    /// By token URI.
    #[graphql(name = "tokenURI")]
    TokenUri,
    /// By mint block.
    #[graphql(name = "blockNumber")]
    BlockNumber,
    /// By block hash.
    #[graphql(name = "blockHash")]
    BlockHash,
}

impl From<TokenOrderBy> for TokenField {
    fn from(o: TokenOrderBy) -> Self {
        match o {
            TokenOrderBy::Id => TokenField::Id,
            TokenOrderBy::Contract => TokenField::Contract,
            TokenOrderBy::TokenId => TokenField::TokenId,
            TokenOrderBy::Owner => TokenField::Owner,
            TokenOrderBy::MintTime => TokenField::MintTime,
            TokenOrderBy::TokenUri => TokenField::TokenUri,
            TokenOrderBy::BlockNumber => TokenField::BlockNumber,
            TokenOrderBy::BlockHash => TokenField::BlockHash,
        }
    }
}

/// `TokenContract_orderBy`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "TokenContract_orderBy")]
pub enum TokenContractOrderBy {
    /// By id.
    #[graphql(name = "id")]
    Id,
    /// By name.
    #[graphql(name = "name")]
    Name,
    /// By symbol.
    #[graphql(name = "symbol")]
    Symbol,
    /// By `doAllAddressesOwnTheirIdByDefault`.
    #[graphql(name = "doAllAddressesOwnTheirIdByDefault")]
    DoAllAddressesOwnTheirIdByDefault,
    /// By metadata support.
    #[graphql(name = "supportsEIP721Metadata")]
    SupportsEip721Metadata,
    /// By token count.
    #[graphql(name = "numTokens")]
    NumTokens,
    /// By owner count.
    #[graphql(name = "numOwners")]
    NumOwners,
}

/// `Owner_orderBy`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Owner_orderBy")]
pub enum OwnerOrderBy {
    /// By id.
    #[graphql(name = "id")]
    Id,
    /// By token count.
    #[graphql(name = "numTokens")]
    NumTokens,
}

/// `All_orderBy`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "All_orderBy")]
pub enum AllOrderBy {
    /// By id.
    #[graphql(name = "id")]
    Id,
    /// By contract count.
    #[graphql(name = "numTokenContracts")]
    NumTokenContracts,
    /// By token count.
    #[graphql(name = "numTokens")]
    NumTokens,
    /// By owner count.
    #[graphql(name = "numOwners")]
    NumOwners,
}

/// `Block_height`: which block to answer as of.
#[derive(InputObject, Clone, Debug, Default)]
#[graphql(name = "Block_height")]
pub struct BlockHeight {
    /// The block with this hash.
    pub hash: Option<Bytes>,
    /// The block with this number.
    pub number: Option<i32>,
    /// The newest block, provided it is at or after this number.
    #[graphql(name = "number_gte")]
    pub number_gte: Option<i32>,
}

/// The id of the one All entity.
const ALL_ID: &str = "all";
/// `first` when the query does not say.
const FIRST_DEFAULT: i32 = 100;

impl Served {
    /// The snapshot block a query asks for, with graph-node's errors for blocks it cannot
    /// answer, and the refusal that `subgraphError: deny` gives a subgraph with errors.
    fn snapshot(
        &self,
        block: Option<&BlockHeight>,
        policy: SubgraphErrorPolicy,
    ) -> async_graphql::Result<u64> {
        if self.info.indexing_errors && policy == SubgraphErrorPolicy::Deny {
            return Err("indexing_error".into());
        }
        self.block_of(block)
    }

    /// The block a `block` argument names.
    fn block_of(&self, block: Option<&BlockHeight>) -> async_graphql::Result<u64> {
        let head = self.chain.head();
        let Some(b) = block else {
            return Ok(head);
        };
        if let Some(hash) = &b.hash {
            return self.chain.block_by_hash(&hash.0).ok_or_else(|| {
                "Failed to decode `block.hash` value: `no block with that hash found`".into()
            });
        }
        if let Some(n) = b.number {
            let n = u64::try_from(n).map_err(|_| {
                async_graphql::Error::new(format!(
                    "Failed to decode `block.number` value: `{n} is not a block number`"
                ))
            })?;
            return self.check_block(n);
        }
        if let Some(n) = b.number_gte {
            let n = u64::try_from(n).unwrap_or(0);
            self.check_block(n)?;
            return Ok(head);
        }
        Ok(head)
    }

    /// Whether block `n` can be answered.
    fn check_block(&self, n: u64) -> async_graphql::Result<u64> {
        let head = self.chain.head();
        let info = &self.info;
        if n > head {
            return Err(format!(
                "Failed to decode `block.number` value: `subgraph {} has only indexed up to \
                 block number {head} and data for block number {n} is therefore not yet \
                 available`",
                info.deployment
            )
            .into());
        }
        if n < info.prune_before {
            return Err(format!(
                "Failed to decode `block.number` value: `subgraph {} only has data starting \
                 at block number {} and data for block number {n} is therefore not available`",
                info.deployment, info.prune_before
            )
            .into());
        }
        Ok(n)
    }

    /// A Token object.
    fn token(&self, index: u32, block: u64) -> Token {
        Token {
            chain: Arc::clone(&self.chain),
            index,
            block,
        }
    }
}

/// The arguments of a token list, wherever it appears.
struct TokenArgs {
    /// `skip`.
    skip: Option<i32>,
    /// `first`.
    first: Option<i32>,
    /// `orderBy`.
    order_by: Option<TokenOrderBy>,
    /// `orderDirection`.
    order_direction: Option<OrderDirection>,
    /// `where`.
    filter: Option<TokenFilter>,
}

/// Runs a token list query at `block`, with `extra` conditions and optionally restricted to
/// some token indexes.
fn token_list(
    chain: &Arc<Chain>,
    block: u64,
    args: TokenArgs,
    extra: Option<Filter<TokenField>>,
    within: Option<&[u32]>,
) -> async_graphql::Result<Vec<Token>> {
    let (first, skip) = query::check_paging(
        i64::from(args.first.unwrap_or(FIRST_DEFAULT)),
        i64::from(args.skip.unwrap_or(0)),
    )?;
    let mut filter = match args.filter {
        Some(f) => f.into_filter()?,
        None => Filter::all(),
    };
    if let Some(extra) = extra {
        filter = Filter::And(vec![filter, extra]);
    }
    let q = TokenQuery {
        first,
        skip,
        order_by: args.order_by.map(TokenField::from).unwrap_or_default(),
        direction: args.order_direction.into(),
        filter,
        block,
        within,
    };
    Ok(query::select_tokens(chain, &q)
        .into_iter()
        .map(|index| Token {
            chain: Arc::clone(chain),
            index,
            block,
        })
        .collect())
}

/// The request's [`Served`].
fn served<'c>(ctx: &Context<'c>) -> async_graphql::Result<&'c Served> {
    ctx.data::<Served>()
}

/// `Token`.
pub struct Token {
    /// The chain.
    chain: Arc<Chain>,
    /// Index into the chain's tokens.
    index: u32,
    /// The snapshot block.
    block: u64,
}

impl Token {
    /// The token's record.
    pub(super) fn record(&self) -> &MintedToken {
        &self.chain.tokens()[self.index as usize]
    }

    /// The chain it is from.
    pub(super) fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The snapshot block it is seen at.
    pub(super) fn block(&self) -> u64 {
        self.block
    }
}

#[Object(name = "Token")]
impl Token {
    /// `<contract>_<tokenId>`.
    async fn id(&self) -> ID {
        ID(self.record().graph_id.to_string())
    }

    /// The contract.
    async fn contract(&self) -> TokenContract {
        TokenContract {
            chain: Arc::clone(&self.chain),
            index: self.record().contract,
            block: self.block,
        }
    }

    /// The token id.
    #[graphql(name = "tokenID")]
    async fn token_id(&self) -> BigInt {
        BigInt(self.record().key.token_id.0)
    }

    /// The owner as of the snapshot (the zero address once burned).
    async fn owner(&self) -> Owner {
        Owner {
            chain: Arc::clone(&self.chain),
            index: self.record().owner_at(self.block),
            block: self.block,
        }
    }

    /// Timestamp of the mint block.
    async fn mint_time(&self) -> BigInt {
        BigInt(U256::from(self.chain.block_timestamp(self.record().block)))
    }

    /// The token URI.
    #[graphql(name = "tokenURI")]
    async fn token_uri(&self) -> String {
        self.chain.token_uri(self.record())
    }

    /// The mint block.
    async fn block_number(&self) -> BigInt {
        BigInt(U256::from(self.record().block))
    }

    /// Hash of the mint block.
    async fn block_hash(&self) -> Bytes {
        Bytes(self.chain.block_hash(self.record().block).to_vec())
    }
}

/// `TokenContract`.
pub struct TokenContract {
    /// The chain.
    chain: Arc<Chain>,
    /// Index into the chain's contracts.
    index: u16,
    /// The snapshot block.
    block: u64,
}

impl TokenContract {
    /// The contract's record.
    fn record(&self) -> &ContractInfo {
        &self.chain.contracts()[usize::from(self.index)]
    }
}

#[Object(name = "TokenContract")]
impl TokenContract {
    /// The contract address.
    async fn id(&self) -> ID {
        ID(self.record().id.clone())
    }

    /// `name()`, if the contract has one.
    async fn name(&self) -> Option<String> {
        self.record().name.clone()
    }

    /// `symbol()`, if the contract has one.
    async fn symbol(&self) -> Option<String> {
        self.record().symbol.clone()
    }

    /// Always false on this chain.
    async fn do_all_addresses_own_their_id_by_default(&self) -> bool {
        false
    }

    /// Whether it supports the ERC-721 metadata interface.
    #[graphql(name = "supportsEIP721Metadata")]
    async fn supports_eip721_metadata(&self) -> bool {
        self.record().supports_metadata
    }

    /// Its tokens.
    #[allow(clippy::too_many_arguments)]
    async fn tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        order_by: Option<TokenOrderBy>,
        order_direction: Option<OrderDirection>,
        #[graphql(name = "where")] filter: Option<TokenFilter>,
    ) -> async_graphql::Result<TokenRows> {
        let args = TokenArgs {
            skip,
            first,
            order_by,
            order_direction,
            filter,
        };
        let mine = Filter::Cond(
            TokenField::Contract,
            Op::Eq,
            Operand::Text(self.record().id.clone()),
        );
        let rows = token_list(&self.chain, self.block, args, Some(mine), None)?;
        Ok(TokenRows::new(ctx, rows, served(ctx)?.one_pass))
    }

    /// Tokens it has as of the snapshot (burned ones excluded).
    async fn num_tokens(&self) -> BigInt {
        BigInt(U256::from(self.live_tokens().count()))
    }

    /// Distinct owners of its tokens as of the snapshot.
    async fn num_owners(&self) -> BigInt {
        let owners: HashSet<u32> = self.live_tokens().map(|t| t.owner).collect();
        BigInt(U256::from(owners.len()))
    }
}

impl TokenContract {
    /// Its tokens that exist and are not burned as of the snapshot.
    fn live_tokens(&self) -> impl Iterator<Item = &MintedToken> {
        let contract = self.index;
        let block = self.block;
        live_of_contract(&self.chain, contract, block)
    }
}

/// Tokens of contract `c` that exist and are not burned as of `block`.
fn live_of_contract(chain: &Chain, c: u16, block: u64) -> impl Iterator<Item = &MintedToken> {
    let prefix = format!("{}_", chain.contracts()[usize::from(c)].id);
    let tokens = chain.tokens();
    let by_id = chain.by_id();
    let start = by_id.partition_point(|&i| *tokens[i as usize].graph_id < *prefix);
    by_id[start..]
        .iter()
        .map(move |&i| &tokens[i as usize])
        .take_while(move |t| t.graph_id.starts_with(&prefix))
        .filter(move |t| t.minted_by(block) && t.owner_at(block) != 0)
}

/// `Owner`.
pub struct Owner {
    /// The chain.
    chain: Arc<Chain>,
    /// Index into the chain's owners.
    index: u32,
    /// The snapshot block.
    block: u64,
}

impl Owner {
    /// The owner's record.
    fn record(&self) -> &OwnerInfo {
        &self.chain.owners()[self.index as usize]
    }
}

/// Tokens that owner `o` holds as of `block`.
fn held(chain: &Chain, o: u32, block: u64) -> usize {
    let tokens = chain.tokens();
    chain.owners()[o as usize]
        .tokens
        .iter()
        .map(|&i| &tokens[i as usize])
        .filter(|t| t.minted_by(block) && t.owner_at(block) == o)
        .count()
}

#[Object(name = "Owner")]
impl Owner {
    /// The owner address.
    async fn id(&self) -> ID {
        ID(self.record().id.clone())
    }

    /// Its tokens as of the snapshot.
    #[allow(clippy::too_many_arguments)]
    async fn tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        order_by: Option<TokenOrderBy>,
        order_direction: Option<OrderDirection>,
        #[graphql(name = "where")] filter: Option<TokenFilter>,
    ) -> async_graphql::Result<TokenRows> {
        let args = TokenArgs {
            skip,
            first,
            order_by,
            order_direction,
            filter,
        };
        let mine = Filter::Cond(
            TokenField::Owner,
            Op::Eq,
            Operand::Text(self.record().id.clone()),
        );
        let within = &self.record().tokens;
        let rows = token_list(&self.chain, self.block, args, Some(mine), Some(within))?;
        Ok(TokenRows::new(ctx, rows, served(ctx)?.one_pass))
    }

    /// How many tokens it holds as of the snapshot.
    async fn num_tokens(&self) -> BigInt {
        BigInt(U256::from(held(&self.chain, self.index, self.block)))
    }
}

/// `All`: chain-wide totals.
pub struct All {
    /// The chain.
    chain: Arc<Chain>,
    /// The snapshot block.
    block: u64,
}

impl All {
    /// Contracts that have minted by the snapshot.
    fn contracts(&self) -> usize {
        self.chain
            .contracts()
            .iter()
            .filter(|c| c.first_block.is_some_and(|b| b <= self.block))
            .count()
    }

    /// Tokens that exist and are not burned as of the snapshot.
    fn tokens(&self) -> usize {
        self.chain
            .tokens_at(self.block)
            .iter()
            .filter(|t| t.owner_at(self.block) != 0)
            .count()
    }

    /// Owners (the zero address aside) that received a token by the snapshot.
    fn owners(&self) -> usize {
        self.chain
            .owners()
            .iter()
            .skip(1)
            .filter(|o| o.first_block.is_some_and(|b| b <= self.block))
            .count()
    }
}

#[Object(name = "All")]
impl All {
    /// Always `all`.
    async fn id(&self) -> ID {
        ID(ALL_ID.to_owned())
    }

    /// Contracts seen.
    async fn num_token_contracts(&self) -> BigInt {
        BigInt(U256::from(self.contracts()))
    }

    /// Tokens not burned.
    async fn num_tokens(&self) -> BigInt {
        BigInt(U256::from(self.tokens()))
    }

    /// Owners seen.
    async fn num_owners(&self) -> BigInt {
        BigInt(U256::from(self.owners()))
    }
}

/// `_Block_`.
#[derive(SimpleObject)]
#[graphql(name = "_Block_")]
pub struct MetaBlock {
    /// Block hash.
    hash: Option<Bytes>,
    /// Block number.
    number: i32,
    /// Block timestamp.
    timestamp: Option<i32>,
    /// Parent block hash.
    parent_hash: Option<Bytes>,
}

/// `_Meta_`.
#[derive(SimpleObject)]
#[graphql(name = "_Meta_")]
pub struct Meta {
    /// The block answered as of.
    block: MetaBlock,
    /// Deployment id.
    deployment: String,
    /// Whether the subgraph hit indexing errors.
    has_indexing_errors: bool,
}

/// The root query type.
pub struct Query;

#[Object(name = "Query")]
impl Query {
    /// One token by id.
    async fn token(
        &self,
        ctx: &Context<'_>,
        id: ID,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Option<Token>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        Ok(s.chain
            .find(&id)
            .filter(|&i| s.chain.tokens()[i].minted_by(at))
            .map(|i| s.token(i as u32, at)))
    }

    /// Tokens.
    #[allow(clippy::too_many_arguments)]
    async fn tokens(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        order_by: Option<TokenOrderBy>,
        order_direction: Option<OrderDirection>,
        #[graphql(name = "where")] filter: Option<TokenFilter>,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<TokenRows> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        let args = TokenArgs {
            skip,
            first,
            order_by,
            order_direction,
            filter,
        };
        let rows = token_list(&s.chain, at, args, None, None)?;
        Ok(TokenRows::new(ctx, rows, s.one_pass))
    }

    /// One contract by id.
    async fn token_contract(
        &self,
        ctx: &Context<'_>,
        id: ID,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Option<TokenContract>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        Ok(s.chain
            .find_contract(&id)
            .filter(|&c| s.chain.contracts()[c].first_block.is_some_and(|b| b <= at))
            .map(|c| TokenContract {
                chain: Arc::clone(&s.chain),
                index: c as u16,
                block: at,
            }))
    }

    /// Contracts.
    #[allow(clippy::too_many_arguments)]
    async fn token_contracts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        order_by: Option<TokenContractOrderBy>,
        order_direction: Option<OrderDirection>,
        #[graphql(name = "where")] filter: Option<TokenContractFilter>,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Vec<TokenContract>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        let (first, skip) = paging(first, skip)?;
        let filter = filter.map(|f| f.into_filter()).transpose()?;
        let chain = &s.chain;
        let rows: Vec<u16> = (0..chain.contracts().len() as u16)
            .filter(|&c| {
                let info = &chain.contracts()[usize::from(c)];
                info.first_block.is_some_and(|b| b <= at)
                    && filter
                        .as_ref()
                        .is_none_or(|f| f.matches(&|field| contract_value(info, field)))
            })
            .collect();
        let key = |&c: &u16| -> (Value_<'static>, String) {
            let info = &chain.contracts()[usize::from(c)];
            (contract_key(chain, c, order_by, at), info.id.clone())
        };
        let page = query::page_entities(rows, key, order_direction.into(), skip, first);
        Ok(page
            .into_iter()
            .map(|index| TokenContract {
                chain: Arc::clone(chain),
                index,
                block: at,
            })
            .collect())
    }

    /// One owner by id.
    async fn owner(
        &self,
        ctx: &Context<'_>,
        id: ID,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Option<Owner>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        Ok(s.chain
            .find_owner(&id)
            .filter(|&o| s.chain.owners()[o].first_block.is_some_and(|b| b <= at))
            .map(|o| Owner {
                chain: Arc::clone(&s.chain),
                index: o as u32,
                block: at,
            }))
    }

    /// Owners.
    #[allow(clippy::too_many_arguments)]
    async fn owners(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        order_by: Option<OwnerOrderBy>,
        order_direction: Option<OrderDirection>,
        #[graphql(name = "where")] filter: Option<OwnerFilter>,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Vec<Owner>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        let (first, skip) = paging(first, skip)?;
        let filter = filter.map(|f| f.into_filter()).transpose()?;
        let chain = &s.chain;
        let rows: Vec<u32> = (0..chain.owners().len() as u32)
            .filter(|&o| {
                let info = &chain.owners()[o as usize];
                info.first_block.is_some_and(|b| b <= at)
                    && filter.as_ref().is_none_or(|f| {
                        f.matches(&|OwnerField::Id| Value_::Text(info.id.as_str().into()))
                    })
            })
            .collect();
        let key = |&o: &u32| -> (Value_<'static>, String) {
            let id = chain.owners()[o as usize].id.clone();
            match order_by.unwrap_or(OwnerOrderBy::Id) {
                OwnerOrderBy::Id => (Value_::Text(id.clone().into()), id),
                OwnerOrderBy::NumTokens => (Value_::Num(U256::from(held(chain, o, at))), id),
            }
        };
        let page = query::page_entities(rows, key, order_direction.into(), skip, first);
        Ok(page
            .into_iter()
            .map(|index| Owner {
                chain: Arc::clone(chain),
                index,
                block: at,
            })
            .collect())
    }

    /// The totals entity by id (`all`).
    async fn all(
        &self,
        ctx: &Context<'_>,
        id: ID,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Option<All>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        Ok((id.0 == ALL_ID && s.chain.count_at(at) > 0).then(|| All {
            chain: Arc::clone(&s.chain),
            block: at,
        }))
    }

    /// The totals entities (there is one).
    #[allow(clippy::too_many_arguments)]
    async fn alls(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(0)")] skip: Option<i32>,
        #[graphql(default_with = "Some(100)")] first: Option<i32>,
        order_by: Option<AllOrderBy>,
        order_direction: Option<OrderDirection>,
        #[graphql(name = "where")] filter: Option<AllFilter>,
        block: Option<BlockHeight>,
        #[graphql(default)] subgraph_error: SubgraphErrorPolicy,
    ) -> async_graphql::Result<Vec<All>> {
        let s = served(ctx)?;
        let at = s.snapshot(block.as_ref(), subgraph_error)?;
        let (first, skip) = paging(first, skip)?;
        let _ = (order_by, order_direction);
        let filter = filter.map(|f| f.into_filter()).transpose()?;
        let exists = s.chain.count_at(at) > 0
            && filter
                .as_ref()
                .is_none_or(|f| f.matches(&|AllField::Id| Value_::Text(ALL_ID.into())));
        let all = exists.then(|| All {
            chain: Arc::clone(&s.chain),
            block: at,
        });
        Ok(all.into_iter().skip(skip).take(first).collect())
    }

    /// Access to subgraph metadata
    #[graphql(name = "_meta")]
    async fn meta(
        &self,
        ctx: &Context<'_>,
        block: Option<BlockHeight>,
    ) -> async_graphql::Result<Option<Meta>> {
        let s = served(ctx)?;
        let at = s.block_of(block.as_ref())?;
        let chain = &s.chain;
        Ok(Some(Meta {
            block: MetaBlock {
                hash: Some(Bytes(chain.block_hash(at).to_vec())),
                number: i32::try_from(at).unwrap_or(i32::MAX),
                timestamp: i32::try_from(chain.block_timestamp(at)).ok(),
                parent_hash: at
                    .checked_sub(1)
                    .map(|p| Bytes(chain.block_hash(p).to_vec())),
            },
            deployment: s.info.deployment.clone(),
            has_indexing_errors: s.info.indexing_errors,
        }))
    }
}

/// `first` and `skip` with their defaults, checked against graph-node's caps.
fn paging(first: Option<i32>, skip: Option<i32>) -> async_graphql::Result<(usize, usize)> {
    Ok(query::check_paging(
        i64::from(first.unwrap_or(FIRST_DEFAULT)),
        i64::from(skip.unwrap_or(0)),
    )?)
}

/// A contract's sort value for `order_by` as of `at`.
fn contract_key(
    chain: &Chain,
    c: u16,
    order_by: Option<TokenContractOrderBy>,
    at: u64,
) -> Value_<'static> {
    let info = &chain.contracts()[usize::from(c)];
    let text = |s: &Option<String>| s.clone().map_or(Value_::Null, |s| Value_::Text(s.into()));
    match order_by.unwrap_or(TokenContractOrderBy::Id) {
        TokenContractOrderBy::Id => Value_::Text(info.id.clone().into()),
        TokenContractOrderBy::Name => text(&info.name),
        TokenContractOrderBy::Symbol => text(&info.symbol),
        TokenContractOrderBy::DoAllAddressesOwnTheirIdByDefault => Value_::Bool(false),
        TokenContractOrderBy::SupportsEip721Metadata => Value_::Bool(info.supports_metadata),
        TokenContractOrderBy::NumTokens => {
            Value_::Num(U256::from(live_of_contract(chain, c, at).count()))
        }
        TokenContractOrderBy::NumOwners => {
            let owners: HashSet<u32> = live_of_contract(chain, c, at).map(|t| t.owner).collect();
            Value_::Num(U256::from(owners.len()))
        }
    }
}

/// An optional string as a filter value.
fn text_value(s: &Option<String>) -> Value_<'_> {
    match s {
        Some(s) => Value_::Text(s.as_str().into()),
        None => Value_::Null,
    }
}

/// A contract's field for filters.
fn contract_value(c: &ContractInfo, field: ContractField) -> Value_<'_> {
    let text = text_value;
    match field {
        ContractField::Id => Value_::Text(c.id.as_str().into()),
        ContractField::Name => text(&c.name),
        ContractField::Symbol => text(&c.symbol),
        ContractField::SupportsMetadata => Value_::Bool(c.supports_metadata),
    }
}
