from catalyst_mcp.cli import main

main()
