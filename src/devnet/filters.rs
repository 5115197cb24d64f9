//! The subgraph's `where` inputs, field by field as graph-node generates them, and their
//! translation into [`Filter`]s.

use async_graphql::{ID, InputObject};

use super::query::{AllField, ContractField, Filter, Op, Operand, OwnerField, TokenField};
use super::schema::BigInt;

/// A filter input value that becomes the right-hand side of a comparison.
trait IntoOperand {
    /// The operand.
    fn into_operand(self) -> Operand;
}

impl IntoOperand for ID {
    fn into_operand(self) -> Operand {
        Operand::Text(self.0)
    }
}

impl IntoOperand for String {
    fn into_operand(self) -> Operand {
        Operand::Text(self)
    }
}

impl IntoOperand for BigInt {
    fn into_operand(self) -> Operand {
        Operand::Num(self.0)
    }
}

impl IntoOperand for bool {
    fn into_operand(self) -> Operand {
        Operand::Bool(self)
    }
}

impl IntoOperand for Vec<ID> {
    fn into_operand(self) -> Operand {
        Operand::Texts(self.into_iter().map(|id| id.0).collect())
    }
}

impl IntoOperand for Vec<String> {
    fn into_operand(self) -> Operand {
        Operand::Texts(self)
    }
}

impl IntoOperand for Vec<BigInt> {
    fn into_operand(self) -> Operand {
        Operand::Nums(self.into_iter().map(|n| n.0).collect())
    }
}

/// Adds `field op value` when the input has a value for it.
fn cond<F>(parts: &mut Vec<Filter<F>>, field: F, op: Op, value: Option<impl IntoOperand>) {
    if let Some(v) = value {
        parts.push(Filter::Cond(field, op, v.into_operand()));
    }
}

/// Adds the `and` and `or` lists (null members match everything, as graph-node reads them).
fn combine<I, F>(
    parts: &mut Vec<Filter<F>>,
    and: Option<Vec<Option<I>>>,
    or: Option<Vec<Option<I>>>,
    convert: fn(I) -> async_graphql::Result<Filter<F>>,
) -> async_graphql::Result<()> {
    if let Some(list) = and {
        for item in list.into_iter().flatten() {
            parts.push(convert(item)?);
        }
    }
    if let Some(list) = or {
        let mut any = Vec::new();
        for item in list {
            any.push(match item {
                Some(i) => convert(i)?,
                None => Filter::And(Vec::new()),
            });
        }
        parts.push(Filter::Or(any));
    }
    Ok(())
}

/// `Token_filter`: conditions on tokens.
#[derive(InputObject, Default)]
#[graphql(name = "Token_filter")]
pub struct TokenFilter {
    /// Matches when the id equals this.
    #[graphql(name = "id")]
    pub id: Option<ID>,
    /// Matches when the id differs from this.
    #[graphql(name = "id_not")]
    pub id_not: Option<ID>,
    /// Matches when the id is greater than this.
    #[graphql(name = "id_gt")]
    pub id_gt: Option<ID>,
    /// Matches when the id is less than this.
    #[graphql(name = "id_lt")]
    pub id_lt: Option<ID>,
    /// Matches when the id is at least this.
    #[graphql(name = "id_gte")]
    pub id_gte: Option<ID>,
    /// Matches when the id is at most this.
    #[graphql(name = "id_lte")]
    pub id_lte: Option<ID>,
    /// Matches when the id is one of these.
    #[graphql(name = "id_in")]
    pub id_in: Option<Vec<ID>>,
    /// Matches when the id is none of these.
    #[graphql(name = "id_not_in")]
    pub id_not_in: Option<Vec<ID>>,
    /// Matches when the contract's id equals this.
    #[graphql(name = "contract")]
    pub contract: Option<String>,
    /// Matches when the contract's id differs from this.
    #[graphql(name = "contract_not")]
    pub contract_not: Option<String>,
    /// Matches when the contract's id is greater than this.
    #[graphql(name = "contract_gt")]
    pub contract_gt: Option<String>,
    /// Matches when the contract's id is less than this.
    #[graphql(name = "contract_lt")]
    pub contract_lt: Option<String>,
    /// Matches when the contract's id is at least this.
    #[graphql(name = "contract_gte")]
    pub contract_gte: Option<String>,
    /// Matches when the contract's id is at most this.
    #[graphql(name = "contract_lte")]
    pub contract_lte: Option<String>,
    /// Matches when the contract's id is one of these.
    #[graphql(name = "contract_in")]
    pub contract_in: Option<Vec<String>>,
    /// Matches when the contract's id is none of these.
    #[graphql(name = "contract_not_in")]
    pub contract_not_in: Option<Vec<String>>,
    /// Matches when the token id equals this.
    #[graphql(name = "tokenID")]
    pub token_id: Option<BigInt>,
    /// Matches when the token id differs from this.
    #[graphql(name = "tokenID_not")]
    pub token_id_not: Option<BigInt>,
    /// Matches when the token id is greater than this.
    #[graphql(name = "tokenID_gt")]
    pub token_id_gt: Option<BigInt>,
    /// Matches when the token id is less than this.
    #[graphql(name = "tokenID_lt")]
    pub token_id_lt: Option<BigInt>,
    /// Matches when the token id is at least this.
    #[graphql(name = "tokenID_gte")]
    pub token_id_gte: Option<BigInt>,
    /// Matches when the token id is at most this.
    #[graphql(name = "tokenID_lte")]
    pub token_id_lte: Option<BigInt>,
    /// Matches when the token id is one of these.
    #[graphql(name = "tokenID_in")]
    pub token_id_in: Option<Vec<BigInt>>,
    /// Matches when the token id is none of these.
    #[graphql(name = "tokenID_not_in")]
    pub token_id_not_in: Option<Vec<BigInt>>,
    /// Matches when the owner's id equals this.
    #[graphql(name = "owner")]
    pub owner: Option<String>,
    /// Matches when the owner's id differs from this.
    #[graphql(name = "owner_not")]
    pub owner_not: Option<String>,
    /// Matches when the owner's id is greater than this.
    #[graphql(name = "owner_gt")]
    pub owner_gt: Option<String>,
    /// Matches when the owner's id is less than this.
    #[graphql(name = "owner_lt")]
    pub owner_lt: Option<String>,
    /// Matches when the owner's id is at least this.
    #[graphql(name = "owner_gte")]
    pub owner_gte: Option<String>,
    /// Matches when the owner's id is at most this.
    #[graphql(name = "owner_lte")]
    pub owner_lte: Option<String>,
    /// Matches when the owner's id is one of these.
    #[graphql(name = "owner_in")]
    pub owner_in: Option<Vec<String>>,
    /// Matches when the owner's id is none of these.
    #[graphql(name = "owner_not_in")]
    pub owner_not_in: Option<Vec<String>>,
    /// Matches when the mint time equals this.
    #[graphql(name = "mintTime")]
    pub mint_time: Option<BigInt>,
    /// Matches when the mint time differs from this.
    #[graphql(name = "mintTime_not")]
    pub mint_time_not: Option<BigInt>,
    /// Matches when the mint time is greater than this.
    #[graphql(name = "mintTime_gt")]
    pub mint_time_gt: Option<BigInt>,
    /// Matches when the mint time is less than this.
    #[graphql(name = "mintTime_lt")]
    pub mint_time_lt: Option<BigInt>,
    /// Matches when the mint time is at least this.
    #[graphql(name = "mintTime_gte")]
    pub mint_time_gte: Option<BigInt>,
    /// Matches when the mint time is at most this.
    #[graphql(name = "mintTime_lte")]
    pub mint_time_lte: Option<BigInt>,
    /// Matches when the mint time is one of these.
    #[graphql(name = "mintTime_in")]
    pub mint_time_in: Option<Vec<BigInt>>,
    /// Matches when the mint time is none of these.
    #[graphql(name = "mintTime_not_in")]
    pub mint_time_not_in: Option<Vec<BigInt>>,
    /// Matches when the token URI equals this.
    #[graphql(name = "tokenURI")]
    pub token_uri: Option<String>,
    /// Matches when the token URI differs from this.
    #[graphql(name = "tokenURI_not")]
    pub token_uri_not: Option<String>,
    /// Matches when the token URI is greater than this.
    #[graphql(name = "tokenURI_gt")]
    pub token_uri_gt: Option<String>,
    /// Matches when the token URI is less than this.
    #[graphql(name = "tokenURI_lt")]
    pub token_uri_lt: Option<String>,
    /// Matches when the token URI is at least this.
    #[graphql(name = "tokenURI_gte")]
    pub token_uri_gte: Option<String>,
    /// Matches when the token URI is at most this.
    #[graphql(name = "tokenURI_lte")]
    pub token_uri_lte: Option<String>,
    /// Matches when the token URI is one of these.
    #[graphql(name = "tokenURI_in")]
    pub token_uri_in: Option<Vec<String>>,
    /// Matches when the token URI is none of these.
    #[graphql(name = "tokenURI_not_in")]
    pub token_uri_not_in: Option<Vec<String>>,
    /// Matches when the mint block equals this.
    #[graphql(name = "blockNumber")]
    pub block_number: Option<BigInt>,
    /// Matches when the mint block differs from this.
    #[graphql(name = "blockNumber_not")]
    pub block_number_not: Option<BigInt>,
    /// Matches when the mint block is greater than this.
    #[graphql(name = "blockNumber_gt")]
    pub block_number_gt: Option<BigInt>,
    /// Matches when the mint block is less than this.
    #[graphql(name = "blockNumber_lt")]
    pub block_number_lt: Option<BigInt>,
    /// Matches when the mint block is at least this.
    #[graphql(name = "blockNumber_gte")]
    pub block_number_gte: Option<BigInt>,
    /// Matches when the mint block is at most this.
    #[graphql(name = "blockNumber_lte")]
    pub block_number_lte: Option<BigInt>,
    /// Matches when the mint block is one of these.
    #[graphql(name = "blockNumber_in")]
    pub block_number_in: Option<Vec<BigInt>>,
    /// Matches when the mint block is none of these.
    #[graphql(name = "blockNumber_not_in")]
    pub block_number_not_in: Option<Vec<BigInt>>,
    /// Matches when all of these match.
    #[graphql(name = "and")]
    pub and: Option<Vec<Option<TokenFilter>>>,
    /// Matches when any of these matches.
    #[graphql(name = "or")]
    pub or: Option<Vec<Option<TokenFilter>>>,
}

impl TokenFilter {
    /// The filter this input describes.
    pub fn into_filter(self) -> async_graphql::Result<Filter<TokenField>> {
        let mut parts = Vec::new();
        cond(&mut parts, TokenField::Id, Op::Eq, self.id);
        cond(&mut parts, TokenField::Id, Op::Not, self.id_not);
        cond(&mut parts, TokenField::Id, Op::Gt, self.id_gt);
        cond(&mut parts, TokenField::Id, Op::Lt, self.id_lt);
        cond(&mut parts, TokenField::Id, Op::Gte, self.id_gte);
        cond(&mut parts, TokenField::Id, Op::Lte, self.id_lte);
        cond(&mut parts, TokenField::Id, Op::In, self.id_in);
        cond(&mut parts, TokenField::Id, Op::NotIn, self.id_not_in);
        cond(&mut parts, TokenField::Contract, Op::Eq, self.contract);
        cond(&mut parts, TokenField::Contract, Op::Not, self.contract_not);
        cond(&mut parts, TokenField::Contract, Op::Gt, self.contract_gt);
        cond(&mut parts, TokenField::Contract, Op::Lt, self.contract_lt);
        cond(&mut parts, TokenField::Contract, Op::Gte, self.contract_gte);
        cond(&mut parts, TokenField::Contract, Op::Lte, self.contract_lte);
        cond(&mut parts, TokenField::Contract, Op::In, self.contract_in);
        cond(
            &mut parts,
            TokenField::Contract,
            Op::NotIn,
            self.contract_not_in,
        );
        cond(&mut parts, TokenField::TokenId, Op::Eq, self.token_id);
        cond(&mut parts, TokenField::TokenId, Op::Not, self.token_id_not);
        cond(&mut parts, TokenField::TokenId, Op::Gt, self.token_id_gt);
        cond(&mut parts, TokenField::TokenId, Op::Lt, self.token_id_lt);
        cond(&mut parts, TokenField::TokenId, Op::Gte, self.token_id_gte);
        cond(&mut parts, TokenField::TokenId, Op::Lte, self.token_id_lte);
        cond(&mut parts, TokenField::TokenId, Op::In, self.token_id_in);
        cond(
            &mut parts,
            TokenField::TokenId,
            Op::NotIn,
            self.token_id_not_in,
        );
        cond(&mut parts, TokenField::Owner, Op::Eq, self.owner);
        cond(&mut parts, TokenField::Owner, Op::Not, self.owner_not);
        cond(&mut parts, TokenField::Owner, Op::Gt, self.owner_gt);
        cond(&mut parts, TokenField::Owner, Op::Lt, self.owner_lt);
        cond(&mut parts, TokenField::Owner, Op::Gte, self.owner_gte);
        cond(&mut parts, TokenField::Owner, Op::Lte, self.owner_lte);
        cond(&mut parts, TokenField::Owner, Op::In, self.owner_in);
        cond(&mut parts, TokenField::Owner, Op::NotIn, self.owner_not_in);
        cond(&mut parts, TokenField::MintTime, Op::Eq, self.mint_time);
        cond(
            &mut parts,
            TokenField::MintTime,
            Op::Not,
            self.mint_time_not,
        );
        cond(&mut parts, TokenField::MintTime, Op::Gt, self.mint_time_gt);
        cond(&mut parts, TokenField::MintTime, Op::Lt, self.mint_time_lt);
        cond(
            &mut parts,
            TokenField::MintTime,
            Op::Gte,
            self.mint_time_gte,
        );
        cond(
            &mut parts,
            TokenField::MintTime,
            Op::Lte,
            self.mint_time_lte,
        );
        cond(&mut parts, TokenField::MintTime, Op::In, self.mint_time_in);
        cond(
            &mut parts,
            TokenField::MintTime,
            Op::NotIn,
            self.mint_time_not_in,
        );
        cond(&mut parts, TokenField::TokenUri, Op::Eq, self.token_uri);
        cond(
            &mut parts,
            TokenField::TokenUri,
            Op::Not,
            self.token_uri_not,
        );
        cond(&mut parts, TokenField::TokenUri, Op::Gt, self.token_uri_gt);
        cond(&mut parts, TokenField::TokenUri, Op::Lt, self.token_uri_lt);
        cond(
            &mut parts,
            TokenField::TokenUri,
            Op::Gte,
            self.token_uri_gte,
        );
        cond(
            &mut parts,
            TokenField::TokenUri,
            Op::Lte,
            self.token_uri_lte,
        );
        cond(&mut parts, TokenField::TokenUri, Op::In, self.token_uri_in);
        cond(
            &mut parts,
            TokenField::TokenUri,
            Op::NotIn,
            self.token_uri_not_in,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::Eq,
            self.block_number,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::Not,
            self.block_number_not,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::Gt,
            self.block_number_gt,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::Lt,
            self.block_number_lt,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::Gte,
            self.block_number_gte,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::Lte,
            self.block_number_lte,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::In,
            self.block_number_in,
        );
        cond(
            &mut parts,
            TokenField::BlockNumber,
            Op::NotIn,
            self.block_number_not_in,
        );
        combine(&mut parts, self.and, self.or, Self::into_filter)?;
        Ok(Filter::And(parts))
    }
}

/// `TokenContract_filter`: conditions on contracts.
#[derive(InputObject, Default)]
#[graphql(name = "TokenContract_filter")]
pub struct TokenContractFilter {
    /// Matches when the id equals this.
    #[graphql(name = "id")]
    pub id: Option<ID>,
    /// Matches when the id differs from this.
    #[graphql(name = "id_not")]
    pub id_not: Option<ID>,
    /// Matches when the id is greater than this.
    #[graphql(name = "id_gt")]
    pub id_gt: Option<ID>,
    /// Matches when the id is less than this.
    #[graphql(name = "id_lt")]
    pub id_lt: Option<ID>,
    /// Matches when the id is at least this.
    #[graphql(name = "id_gte")]
    pub id_gte: Option<ID>,
    /// Matches when the id is at most this.
    #[graphql(name = "id_lte")]
    pub id_lte: Option<ID>,
    /// Matches when the id is one of these.
    #[graphql(name = "id_in")]
    pub id_in: Option<Vec<ID>>,
    /// Matches when the id is none of these.
    #[graphql(name = "id_not_in")]
    pub id_not_in: Option<Vec<ID>>,
    /// Matches when the name equals this.
    #[graphql(name = "name")]
    pub name: Option<String>,
    /// Matches when the name differs from this.
    #[graphql(name = "name_not")]
    pub name_not: Option<String>,
    /// Matches when the name is one of these.
    #[graphql(name = "name_in")]
    pub name_in: Option<Vec<String>>,
    /// Matches when the symbol equals this.
    #[graphql(name = "symbol")]
    pub symbol: Option<String>,
    /// Matches when the symbol differs from this.
    #[graphql(name = "symbol_not")]
    pub symbol_not: Option<String>,
    /// Matches when the symbol is one of these.
    #[graphql(name = "symbol_in")]
    pub symbol_in: Option<Vec<String>>,
    /// Matches when metadata support equals this.
    #[graphql(name = "supportsEIP721Metadata")]
    pub supports_metadata: Option<bool>,
    /// Matches when metadata support differs from this.
    #[graphql(name = "supportsEIP721Metadata_not")]
    pub supports_metadata_not: Option<bool>,
    /// Matches when all of these match.
    #[graphql(name = "and")]
    pub and: Option<Vec<Option<TokenContractFilter>>>,
    /// Matches when any of these matches.
    #[graphql(name = "or")]
    pub or: Option<Vec<Option<TokenContractFilter>>>,
}

impl TokenContractFilter {
    /// The filter this input describes.
    pub fn into_filter(self) -> async_graphql::Result<Filter<ContractField>> {
        let mut parts = Vec::new();
        cond(&mut parts, ContractField::Id, Op::Eq, self.id);
        cond(&mut parts, ContractField::Id, Op::Not, self.id_not);
        cond(&mut parts, ContractField::Id, Op::Gt, self.id_gt);
        cond(&mut parts, ContractField::Id, Op::Lt, self.id_lt);
        cond(&mut parts, ContractField::Id, Op::Gte, self.id_gte);
        cond(&mut parts, ContractField::Id, Op::Lte, self.id_lte);
        cond(&mut parts, ContractField::Id, Op::In, self.id_in);
        cond(&mut parts, ContractField::Id, Op::NotIn, self.id_not_in);
        cond(&mut parts, ContractField::Name, Op::Eq, self.name);
        cond(&mut parts, ContractField::Name, Op::Not, self.name_not);
        cond(&mut parts, ContractField::Name, Op::In, self.name_in);
        cond(&mut parts, ContractField::Symbol, Op::Eq, self.symbol);
        cond(&mut parts, ContractField::Symbol, Op::Not, self.symbol_not);
        cond(&mut parts, ContractField::Symbol, Op::In, self.symbol_in);
        cond(
            &mut parts,
            ContractField::SupportsMetadata,
            Op::Eq,
            self.supports_metadata,
        );
        cond(
            &mut parts,
            ContractField::SupportsMetadata,
            Op::Not,
            self.supports_metadata_not,
        );
        combine(&mut parts, self.and, self.or, Self::into_filter)?;
        Ok(Filter::And(parts))
    }
}

/// `Owner_filter`: conditions on owners.
#[derive(InputObject, Default)]
#[graphql(name = "Owner_filter")]
pub struct OwnerFilter {
    /// Matches when the id equals this.
    #[graphql(name = "id")]
    pub id: Option<ID>,
    /// Matches when the id differs from this.
    #[graphql(name = "id_not")]
    pub id_not: Option<ID>,
    /// Matches when the id is greater than this.
    #[graphql(name = "id_gt")]
    pub id_gt: Option<ID>,
    /// Matches when the id is less than this.
    #[graphql(name = "id_lt")]
    pub id_lt: Option<ID>,
    /// Matches when the id is at least this.
    #[graphql(name = "id_gte")]
    pub id_gte: Option<ID>,
    /// Matches when the id is at most this.
    #[graphql(name = "id_lte")]
    pub id_lte: Option<ID>,
    /// Matches when the id is one of these.
    #[graphql(name = "id_in")]
    pub id_in: Option<Vec<ID>>,
    /// Matches when the id is none of these.
    #[graphql(name = "id_not_in")]
    pub id_not_in: Option<Vec<ID>>,
    /// Matches when all of these match.
    #[graphql(name = "and")]
    pub and: Option<Vec<Option<OwnerFilter>>>,
    /// Matches when any of these matches.
    #[graphql(name = "or")]
    pub or: Option<Vec<Option<OwnerFilter>>>,
}

impl OwnerFilter {
    /// The filter this input describes.
    pub fn into_filter(self) -> async_graphql::Result<Filter<OwnerField>> {
        let mut parts = Vec::new();
        cond(&mut parts, OwnerField::Id, Op::Eq, self.id);
        cond(&mut parts, OwnerField::Id, Op::Not, self.id_not);
        cond(&mut parts, OwnerField::Id, Op::Gt, self.id_gt);
        cond(&mut parts, OwnerField::Id, Op::Lt, self.id_lt);
        cond(&mut parts, OwnerField::Id, Op::Gte, self.id_gte);
        cond(&mut parts, OwnerField::Id, Op::Lte, self.id_lte);
        cond(&mut parts, OwnerField::Id, Op::In, self.id_in);
        cond(&mut parts, OwnerField::Id, Op::NotIn, self.id_not_in);
        combine(&mut parts, self.and, self.or, Self::into_filter)?;
        Ok(Filter::And(parts))
    }
}

/// `All_filter`: conditions on the totals entity.
#[derive(InputObject, Default)]
#[graphql(name = "All_filter")]
pub struct AllFilter {
    /// Matches when the id equals this.
    #[graphql(name = "id")]
    pub id: Option<ID>,
    /// Matches when the id differs from this.
    #[graphql(name = "id_not")]
    pub id_not: Option<ID>,
    /// Matches when the id is one of these.
    #[graphql(name = "id_in")]
    pub id_in: Option<Vec<ID>>,
    /// Matches when all of these match.
    #[graphql(name = "and")]
    pub and: Option<Vec<Option<AllFilter>>>,
    /// Matches when any of these matches.
    #[graphql(name = "or")]
    pub or: Option<Vec<Option<AllFilter>>>,
}

impl AllFilter {
    /// The filter this input describes.
    pub fn into_filter(self) -> async_graphql::Result<Filter<AllField>> {
        let mut parts = Vec::new();
        cond(&mut parts, AllField::Id, Op::Eq, self.id);
        cond(&mut parts, AllField::Id, Op::Not, self.id_not);
        cond(&mut parts, AllField::Id, Op::In, self.id_in);
        combine(&mut parts, self.and, self.or, Self::into_filter)?;
        Ok(Filter::And(parts))
    }
}
