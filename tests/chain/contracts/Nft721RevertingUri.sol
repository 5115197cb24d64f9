// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./Erc721Core.sol";

/// @title An ERC-721 that claims the metadata extension but never gives a token URI.
/// @notice `name` and `symbol` work; `tokenURI` reverts with "uri withheld" for every id,
/// minted or not.
contract Nft721RevertingUri is Erc721Core {
    string private tokenName;
    string private tokenSymbol;

    constructor(string memory name_, string memory symbol_) {
        tokenName = name_;
        tokenSymbol = symbol_;
    }

    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == 0x5b5e139f || super.supportsInterface(interfaceId);
    }

    function name() external view returns (string memory) {
        return tokenName;
    }

    function symbol() external view returns (string memory) {
        return tokenSymbol;
    }

    function tokenURI(uint256) external pure returns (string memory) {
        revert("uri withheld");
    }

    function mint(address to, uint256 tokenId) external {
        mintOne(to, tokenId);
    }
}
