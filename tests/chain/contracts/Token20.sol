// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title A small ERC-20 whose mints look like ERC-721 mints but for the topic count.
/// @notice Its Transfer event has the same signature hash as ERC-721's, but `value` is not
/// indexed, so a log of it has three topics and the amount in its data. The chain source
/// must not take these for NFT mints.
contract Token20 {
    event Transfer(address indexed from, address indexed to, uint256 value);

    string public name;
    string public symbol;
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;

    constructor(string memory name_, string memory symbol_) {
        name = name_;
        symbol = symbol_;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        require(balanceOf[msg.sender] >= amount, "balance too low");
        unchecked {
            balanceOf[msg.sender] -= amount;
        }
        balanceOf[to] += amount;
        emit Transfer(msg.sender, to, amount);
        return true;
    }

    /// Creates `amount` for `to`: one Transfer log from address zero.
    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }
}
