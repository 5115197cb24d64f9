// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./Erc721Core.sol";

/// @title An ERC-721 with metadata that mints many tokens in one transaction.
contract Nft721Batch is Erc721Metadata {
    constructor(string memory name_, string memory symbol_, string memory baseUri_)
        Erc721Metadata(name_, symbol_, baseUri_)
    {}

    function mint(address to, uint256 tokenId) external {
        mintOne(to, tokenId);
    }

    /// Mints ids `firstId` .. `firstId + count - 1` to `to`, one Transfer log each, in order.
    function mintBatch(address to, uint256 firstId, uint256 count) external {
        require(to != address(0), "mint to zero address");
        for (uint256 i = 0; i < count; i++) {
            uint256 tokenId = firstId + i;
            require(owners[tokenId] == address(0), "token already minted");
            owners[tokenId] = to;
            emit Transfer(address(0), to, tokenId);
        }
        balances[to] += count;
    }
}
