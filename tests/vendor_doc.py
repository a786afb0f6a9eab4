"""The vendor's own GetBill example answer (getbill.md), verbatim, shared by the tests."""

import json
from typing import Any

# The "return data structure example" of the vendor's GetBill page, verbatim.
EXAMPLE_RESPONSE = """
{
    "ret": 200,
    "data": {
        "status": 0,
        "desc": "get success",
        "result": {
            "totalitems": 8151,
            "currentpage": 1,
            "itemsperpage": 10,
            "bills": [
                {
                    "id": 22670,
                    "extnumber": "",
                    "destnumber": "13387525701",
                    "displaynumber": "2190170001",
                    "starttime": "2019-09-27 14:58:37",
                    "answertime": null,
                    "endtime": "2019-09-27 14:59:05",
                    "duration": 28,
                    "billsec": 0,
                    "direction": "callout",
                    "callmethod": 6,
                    "userid": "0",
                    "memberid": "0",
                    "chengshudu": "0",
                    "customuuid": "0",
                    "recordfilename": "",
                    "downloadip": "",
                    "hangupdirection": 10041,
                    "hangupcause": 10020,
                    "userkey":"#"
                }
            ]
        },
        "reqtime": 1581502410,
        "rsptime": 1581502410
    },
    "msg": ""
}
"""


def example_answer() -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(EXAMPLE_RESPONSE)
    return answer


def example_bill() -> dict[str, Any]:
    bill: dict[str, Any] = example_answer()["data"]["result"]["bills"][0]
    return bill
