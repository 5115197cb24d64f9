// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title Batched read calls with the Multicall3 ABI.
/// @notice Our own implementation of the widely deployed Multicall3's `aggregate3` (plus two
/// small getters), for tests that install it at 0xcA11bde05977b3631167028862bE2a173976CA11
/// with `anvil_setCode`. Each call runs in order; a failing call whose `allowFailure` is
/// false reverts the whole batch with "Multicall3: call failed", any other call's outcome
/// is returned as (success, returnData).
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        returnData = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            Call3 calldata item = calls[i];
            (bool ok, bytes memory data) = item.target.call(item.callData);
            require(ok || item.allowFailure, "Multicall3: call failed");
            returnData[i] = Result(ok, data);
        }
    }

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }

    function getChainId() external view returns (uint256) {
        return block.chainid;
    }
}
