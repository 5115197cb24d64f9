// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./Erc721Core.sol";

/// @title An ordinary ERC-721 with metadata: one mint per call, and burns.
contract Nft721 is Erc721Metadata {
    constructor(string memory name_, string memory symbol_, string memory baseUri_)
        Erc721Metadata(name_, symbol_, baseUri_)
    {}

    /// Mints `tokenId` to `to`: one Transfer log from address zero.
    function mint(address to, uint256 tokenId) external {
        mintOne(to, tokenId);
    }

    /// Burns `tokenId`: one Transfer log to address zero.
    function burn(uint256 tokenId) external {
        burnOne(tokenId);
    }
}
