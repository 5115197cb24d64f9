// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title Ownership bookkeeping shared by the test NFTs.
/// @notice A deliberately small ERC-721 core for nifty's chain-source tests: one owner slot
/// per token and one balance slot per holder, the standard Transfer event, and a plain
/// owner-only `transferFrom` (no approvals) so tests can make non-mint transfers too.
/// Nothing here stores strings per token, which keeps a mint cheap enough for thousands of
/// them to fit in one block.
abstract contract Erc721Core {
    /// The ERC-721 Transfer event: from, to and tokenId are all indexed, so a log of it has
    /// four topics (an ERC-20 Transfer has three).
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);

    mapping(uint256 => address) internal owners;
    mapping(address => uint256) internal balances;

    /// ERC-165: this core speaks ERC-165 itself and ERC-721.
    function supportsInterface(bytes4 interfaceId) public view virtual returns (bool) {
        return interfaceId == 0x01ffc9a7 || interfaceId == 0x80ac58cd;
    }

    function ownerOf(uint256 tokenId) public view returns (address owner) {
        owner = owners[tokenId];
        require(owner != address(0), "nonexistent token");
    }

    function balanceOf(address holder) external view returns (uint256) {
        require(holder != address(0), "zero address");
        return balances[holder];
    }

    /// Moves a token its owner holds; the sender must be that owner.
    function transferFrom(address from, address to, uint256 tokenId) external {
        require(ownerOf(tokenId) == from, "not the owner");
        require(msg.sender == from, "sender is not the owner");
        require(to != address(0), "transfer to zero address");
        owners[tokenId] = to;
        unchecked {
            balances[from] -= 1;
            balances[to] += 1;
        }
        emit Transfer(from, to, tokenId);
    }

    /// Records a new token and emits its mint log, Transfer from address zero.
    function mintOne(address to, uint256 tokenId) internal {
        require(to != address(0), "mint to zero address");
        require(owners[tokenId] == address(0), "token already minted");
        owners[tokenId] = to;
        unchecked {
            balances[to] += 1;
        }
        emit Transfer(address(0), to, tokenId);
    }

    /// Removes a token and emits Transfer to address zero.
    function burnOne(uint256 tokenId) internal {
        address owner = ownerOf(tokenId);
        delete owners[tokenId];
        unchecked {
            balances[owner] -= 1;
        }
        emit Transfer(owner, address(0), tokenId);
    }
}

/// @title The ERC-721 metadata extension over Erc721Core.
/// @notice `name` and `symbol` come from the constructor; `tokenURI(id)` is a base set at
/// deployment followed by the id in decimal, computed on every call rather than stored.
abstract contract Erc721Metadata is Erc721Core {
    string private tokenName;
    string private tokenSymbol;
    string private baseUri;

    constructor(string memory name_, string memory symbol_, string memory baseUri_) {
        tokenName = name_;
        tokenSymbol = symbol_;
        baseUri = baseUri_;
    }

    /// ERC-165, ERC-721 and ERC-721 metadata.
    function supportsInterface(bytes4 interfaceId) public view virtual override returns (bool) {
        return interfaceId == 0x5b5e139f || super.supportsInterface(interfaceId);
    }

    function name() external view returns (string memory) {
        return tokenName;
    }

    function symbol() external view returns (string memory) {
        return tokenSymbol;
    }

    /// The base URI and the token's id in decimal; reverts for a token that does not exist.
    function tokenURI(uint256 tokenId) external view returns (string memory) {
        ownerOf(tokenId);
        return string.concat(baseUri, decimal(tokenId));
    }

    /// `value` written in base ten.
    function decimal(uint256 value) internal pure returns (string memory) {
        if (value == 0) {
            return "0";
        }
        uint256 digits = 0;
        for (uint256 rest = value; rest != 0; rest /= 10) {
            digits++;
        }
        bytes memory text = new bytes(digits);
        while (value != 0) {
            digits--;
            text[digits] = bytes1(uint8(48 + (value % 10)));
            value /= 10;
        }
        return string(text);
    }
}
