// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./Erc721Core.sol";

/// @title An ERC-721 without the metadata extension.
/// @notice No name, symbol or tokenURI: calling them reverts (there is no fallback), and
/// `supportsInterface(0x5b5e139f)` answers false.
contract Nft721Bare is Erc721Core {
    function mint(address to, uint256 tokenId) external {
        mintOne(to, tokenId);
    }
}
